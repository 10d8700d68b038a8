"""Problem documents (RFC 9457) -> exceptions: one class per stable ``code``, grouped by status."""

from typing import Any


class ConvLensError(Exception):
    """Any error answer; ``problem`` is the whole document (``code``, ``detail``, extra members)."""

    def __init__(self, status: int, code: str, detail: str, problem: dict[str, Any] | None = None):
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail = status, code, detail
        self.problem = problem or {}


class BadRequest(ConvLensError):
    """400: the request could not be read (malformed JSON, multipart, params, a bad picture)."""


class BadImage(BadRequest):
    """400: a picture is empty, not an image, or broken."""


class Unauthorized(ConvLensError):
    """401: no API key was sent, or it is unknown or revoked."""


class Forbidden(ConvLensError):
    """403: the API key's scope does not allow this call."""


class NotFound(ConvLensError):
    """404: no such model, layer, class, method, job, image, artifact or result (or not yours)."""


class UnknownModel(NotFound):
    pass


class UnknownMethod(NotFound):
    pass


class UnknownJob(NotFound):
    pass


class UnknownImage(NotFound):
    pass


class UnknownArtifact(NotFound):
    pass


class UnknownCollection(NotFound):
    pass


class NotAcceptable(ConvLensError):
    """406: the answer cannot be given in the media type asked for."""


class Conflict(ConvLensError):
    """409: e.g. cancelling a finished job."""


class JobFinished(Conflict):
    pass


class PayloadTooLarge(ConvLensError):
    """413: the body or a picture is over the service's limit."""


class UnsupportedMediaType(ConvLensError):
    """415: a request body or picture format the service does not take."""


class InvalidRequest(ConvLensError):
    """422: the request is well-formed but names something wrong (``problem['errors']`` lists fields)."""


class InvalidParams(InvalidRequest):
    pass


class WebhookRefused(InvalidRequest):
    """422: the webhook target is not allowed, or the service has no webhook secret."""


class OverBudget(InvalidRequest):
    """422: the call's estimated cost is over the inline budget (submit a job) or the job caps."""


class RateLimited(ConvLensError):
    """429: the inline pool is full, or the key is over its rate or job quota; ``retry_after`` seconds were suggested."""

    retry_after: float | None = None


class ServerError(ConvLensError):
    """5xx other than 503."""


class Unavailable(ServerError):
    """503: the broker or storage is down; ``retry_after`` seconds were suggested."""

    retry_after: float | None = None


class JobFailed(ConvLensError):
    """A waited-for job ended failed, cancelled or aborted (``job`` holds it)."""

    def __init__(self, job):
        error = job.error or {}
        super().__init__(200, error.get("code", job.state), error.get("message", f"the job ended {job.state}"))
        self.job = job


BY_CODE: dict[str, type[ConvLensError]] = {
    "empty_image": BadImage,
    "not_an_image": BadImage,
    "bad_image": BadImage,
    "bad_base64": BadImage,
    "unknown_model": UnknownModel,
    "unknown_method": UnknownMethod,
    "method_not_inline": UnknownMethod,
    "unknown_job": UnknownJob,
    "unknown_image": UnknownImage,
    "unknown_artifact": UnknownArtifact,
    "unknown_result": UnknownArtifact,
    "job_finished": JobFinished,
    "invalid_params": InvalidParams,
    "webhook_refused": WebhookRefused,
    "webhooks_not_configured": WebhookRefused,
    "unknown_collection": UnknownCollection,
    "over_inline_budget": OverBudget,
    "over_job_caps": OverBudget,
}

BY_STATUS: dict[int, type[ConvLensError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    406: NotAcceptable,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    503: Unavailable,
}


def error_for(status: int, problem: dict[str, Any], retry_after: float | None = None) -> ConvLensError:
    """The exception for an error answer: by ``code`` first, then by status."""
    code = str(problem.get("code", "http_error"))
    kind = BY_CODE.get(code) or BY_STATUS.get(status) or (ServerError if status >= 500 else ConvLensError)
    error = kind(status, code, str(problem.get("detail", "")), problem)
    if isinstance(error, (RateLimited, Unavailable)):
        error.retry_after = retry_after
    return error
