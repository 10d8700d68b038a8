"""The OpenAPI document: FastAPI's, plus the per-method schemas the inline and job routes refer to.

On top of FastAPI's document: operation ids are the route names (``submit_job``,
``saliency``), request bodies built from the registry replace the ones named in
``bodies``, and every operation documents its errors as
``application/problem+json`` (FastAPI's own 422 schema is not what we answer).
"""

import json

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from api.problems import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}


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


def _document_problems(operation: dict) -> None:
    problem = {"content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}
    responses = operation.setdefault("responses", {})
    if "422" in responses:
        responses["422"] = {"description": "invalid request (problem details naming each field)", **problem}
    responses.setdefault("4XX", {"description": "bad request (problem details with a stable code)", **problem})
    responses.setdefault("5XX", {
        "description": "unavailable (503 with Retry-After when the broker or storage is down)",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        **problem,
    })


def openapi_text(app: FastAPI) -> str:
    """The document as stable text (sorted keys), as committed in openapi/openapi.json."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
