"""The OpenAPI document: FastAPI's, plus the per-method schemas the inline routes refer to."""

import json

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def install_openapi(app: FastAPI, components: dict[str, dict]) -> None:
    """Serve FastAPI's document with ``components`` added to its schemas."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            clashes = sorted(set(schemas) & set(components))
            if clashes:
                raise RuntimeError(f"schema names used twice in the OpenAPI document: {clashes}")
            schemas.update(components)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


def openapi_text(app: FastAPI) -> str:
    """The document as stable text (sorted keys), as committed in openapi/openapi.json."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
