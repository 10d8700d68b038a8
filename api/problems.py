"""Errors as RFC 9457 problem details (``application/problem+json``) with a stable code.

Every error the API returns has the same shape:
``{"type", "title", "status", "detail", "code", ...extra}``.
"""

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import EngineError, ImageRejected
from engine.validation import describe_errors, readable_errors
from worker.broker import BrokerUnavailable
from worker.jobs import JobQuotaExceeded
from worker.logs import json_logger
from worker.storage import StorageUnavailable
from worker.collections import CollectionRejected, UnknownCollection
from worker.style_models import UnknownStyleModel
from worker.uploads import UnknownImage
from worker.usage import StorageQuotaExceeded
from worker.webhooks import WebhookRefused

PROBLEM_JSON = "application/problem+json"
log = json_logger("convlens.errors")

ENGINE_STATUS = {
    "unknown_model": 404,
    "unknown_layer": 404,
    "unknown_class": 404,
    "unknown_channel": 404,
    "unknown_method": 404,
    "invalid_params": 422,
    "non_finite_output": 422,
    "missing_input": 422,
    "unknown_input": 422,
    "wrong_image_count": 422,
    "unsupported_model": 422,
    "over_inline_budget": 422,
    "over_job_caps": 422,
    "not_a_model": 400,
    "pickled_model": 415,
    "format_not_supported": 415,
    "invalid_onnx": 422,
    "unsupported_operator": 422,
    "invalid_metadata": 422,
    "output_mismatch": 422,
    "model_failed": 422,
    "too_many_parameters": 422,
    "no_parameters": 422,
    "model_too_slow": 422,
    "model_too_large": 413,
    "too_many_nodes": 422,
    "tensor_too_large": 422,
    "data_dependent_shape": 422,
    "model_memory_limit": 422,
    "model_crashed": 422,
    "vetting_busy": 503,
    "vetting_unavailable": 503,
}

IMAGE_STATUS = {
    "empty_image": 400,
    "not_an_image": 400,
    "bad_image": 400,
    "bad_base64": 400,
    "bad_pixels": 422,
    "image_too_large": 413,
    "unsupported_image_format": 415,
}


class Problem(Exception):
    """Raise anywhere in the API to answer with a problem document."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


def picture_problem(exc: Exception) -> Problem:
    """The problem one picture of a request ran into (unreadable, unknown, or refused by the engine)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ImageRejected):
        return Problem(IMAGE_STATUS.get(exc.code, 400), exc.code, exc.message, input=exc.input)
    if isinstance(exc, UnknownImage):
        return Problem(404, "unknown_image", str(exc))
    if isinstance(exc, EngineError):
        return Problem(ENGINE_STATUS.get(exc.code, 400), exc.code, exc.message, **getattr(exc, "extra", {}))
    raise TypeError(f"not a picture's problem: {type(exc).__name__}")


def invalid_request(exc: ValidationError) -> Problem:
    """422 ``invalid_request`` naming every field pydantic refused, one line each."""
    return Problem(422, "invalid_request", describe_errors(exc, "body") or "invalid request", errors=readable_errors(exc))


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://convlens.dev/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }


def problem_response(status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(problem_body(status, code, detail, **extra), status_code=status, headers=headers, media_type=PROBLEM_JSON)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem):
        return problem_response(exc.status, exc.code, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(EngineError)
    @app.exception_handler(ImageRejected)
    @app.exception_handler(UnknownImage)
    async def _picture(_request: Request, exc: Exception):
        problem = picture_problem(exc)
        return problem_response(problem.status, problem.code, problem.detail, **problem.extra)

    @app.exception_handler(UnknownCollection)
    async def _unknown_collection(_request: Request, exc: UnknownCollection):
        return problem_response(404, "unknown_collection", str(exc))

    @app.exception_handler(UnknownStyleModel)
    async def _unknown_style_model(_request: Request, exc: UnknownStyleModel):
        return problem_response(404, "unknown_style_model", str(exc))

    @app.exception_handler(CollectionRejected)
    async def _collection_rejected(_request: Request, exc: CollectionRejected):
        return problem_response(exc.status, exc.code, exc.message, **exc.extra)

    @app.exception_handler(WebhookRefused)
    async def _webhook(_request: Request, exc: WebhookRefused):
        return problem_response(422, exc.code, exc.message)

    @app.exception_handler(BrokerUnavailable)
    async def _broker(request: Request, exc: BrokerUnavailable):
        return problem_response(503, "broker_unavailable", str(exc), _retry_after(request))

    @app.exception_handler(JobQuotaExceeded)
    async def _job_quota(request: Request, exc: JobQuotaExceeded):
        retry = {"Retry-After": str(request.app.state.settings.quota_retry_after_seconds)}
        return problem_response(429, "job_quota_exceeded", str(exc), retry, limit=exc.limit)

    @app.exception_handler(StorageQuotaExceeded)
    async def _storage_quota(request: Request, exc: StorageQuotaExceeded):
        retry = {"Retry-After": str(request.app.state.settings.quota_retry_after_seconds)}
        return problem_response(429, "storage_quota_exceeded", str(exc), retry, limit=exc.limit)

    @app.exception_handler(StorageUnavailable)
    async def _storage(request: Request, exc: StorageUnavailable):
        return problem_response(503, "storage_unavailable", str(exc), _retry_after(request))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        errors = list(exc.errors())
        return problem_response(422, "invalid_request", describe_errors(errors, "body") or "invalid request", errors=readable_errors(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return problem_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled %s", type(exc).__name__, exc_info=exc, extra={"request_id": getattr(request.state, "request_id", None)})
        return problem_response(500, "internal_error", "the server failed to handle this request; it has been logged")


def _retry_after(request: Request) -> dict[str, str]:
    return {"Retry-After": str(request.app.state.settings.retry_after_seconds)}
