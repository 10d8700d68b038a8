"""The OpenAPI document: FastAPI's, plus the per-method schemas the inline routes refer to.

Every operation also documents the problem documents it can answer with
(``application/problem+json``): any 4xx, 503 when Redis or storage is down,
and for keyed operations 401 (with ``WWW-Authenticate``), 403 and 429 (with
``Retry-After``). FastAPI's own 422 schema is replaced: our 422 is a problem
document too.
"""

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
            _document_problems(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}


def _problem(description: str, headers: dict | None = None) -> dict:
    return {"description": description, "content": _PROBLEM, **({"headers": headers} if headers else {})}


def _document_problems(document: dict) -> None:
    challenge = {"WWW-Authenticate": {"description": "Bearer realm=\"convlens\"", "schema": {"type": "string"}}}
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            if "422" in responses:
                responses["422"] = _problem("invalid request or params")
            responses.setdefault("4XX", _problem("bad request (a problem document with a stable code)"))
            responses.setdefault("503", _problem("broker or storage unavailable; retry later", _RETRY_AFTER))
            if operation.get("security"):
                responses.setdefault("401", _problem("missing or unknown API key", challenge))
                responses.setdefault("403", _problem("the API key lacks the scope this needs"))
                responses.setdefault("429", _problem("rate limit, job or storage quota, or a full inline pool", _RETRY_AFTER))
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def openapi_text(app: FastAPI) -> str:
    """The document as stable text (sorted keys), as committed in openapi/openapi.json."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
