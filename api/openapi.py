"""The OpenAPI document: FastAPI's, plus the per-method schemas the inline and job routes refer to.

On top of FastAPI's document: operation ids are the route names (``submit_job``,
``saliency``), request bodies built from the registry replace the ones named in
``bodies``, and every operation documents the problem documents it can answer
with (``application/problem+json``): any 4xx, 503 when Redis or storage is
down, and for keyed operations 401 (with ``WWW-Authenticate``), 403 and 429
(with ``Retry-After``). FastAPI's own 422 schema is replaced: our 422 is a
problem document too.
"""

import json

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api.problems import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer realm=\"convlens\"", "schema": {"type": "string"}}}


def route_operation_id(route: APIRoute) -> str:
    """Operation ids for people: the route's name (``submit_job``, not ``submit_job_v1_jobs_post``)."""
    return route.name


def install_openapi(app: FastAPI, components: dict[str, dict], bodies: dict[str, dict] | None = None) -> None:
    """Serve FastAPI's document with ``components`` added and ``bodies`` (operation id -> requestBody) set."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            clashes = sorted(name for name in set(schemas) & set(components) if schemas[name] != components[name])
            if clashes:
                raise RuntimeError(f"schema names used twice in the OpenAPI document: {clashes}")
            schemas.update(components)
            for operation in _operations(document):
                if operation["operationId"] in (bodies or {}):
                    operation["requestBody"] = bodies[operation["operationId"]]
                _document_problems(operation)
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi


def _operations(document: dict):
    for path in document["paths"].values():
        yield from path.values()


def _problem(description: str, headers: dict | None = None) -> dict:
    content = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
    return {"description": description, "content": content, **({"headers": headers} if headers else {})}


def _document_problems(operation: dict) -> None:
    responses = operation.setdefault("responses", {})
    if "422" in responses:
        responses["422"] = _problem("invalid request or params (problem details naming each field)")
    responses.setdefault("4XX", _problem("bad request (a problem document with a stable code)"))
    responses.setdefault("503", _problem("broker or storage unavailable; retry later", _RETRY_AFTER))
    if operation.get("security"):
        responses.setdefault("401", _problem("missing or unknown API key", _CHALLENGE))
        responses.setdefault("403", _problem("the API key lacks the scope this needs"))
        responses.setdefault("429", _problem("rate limit, job, storage or event-stream quota, or a full inline pool", _RETRY_AFTER))


def openapi_text(app: FastAPI) -> str:
    """The document as stable text (sorted keys), as committed in openapi/openapi.json."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
