"""The job API's typed schemas: one request schema per method, discriminated by ``method``.

``POST /v1/jobs`` validates the envelope (:class:`JobRequest`) and then the
method's params against the registry, as before; these per-method models
exist so that the OpenAPI document (and any client generated from it) knows
every method's inputs and params. They are made from the registry, so a new
method is documented with no code.
"""

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from api.picture_refs import FORMS, CollectionRef, PictureRef
from api.schemas import DEFAULT_MODEL, ProblemDetails, camel
from engine.registry import InputSlot, Method, all_methods
from worker.jobs import STATES

REF = "#/components/schemas/{model}"
WEBHOOK_EVENTS = ("start", "progress", "completed")


class WebhookRequest(BaseModel):
    """Where to deliver this job's events (signed, Standard Webhooks style)."""

    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl = Field(description="an http(s) URL receiving POSTed JSON events", examples=["https://example.com/hooks/convlens"])
    events: list[Literal[WEBHOOK_EVENTS]] = Field(
        default_factory=lambda: ["completed"],
        min_length=1,
        description="start (the job began), progress (at most once a second), completed (any final state)",
    )


class JobOptions(BaseModel):
    """What every job request may add to its method, model, inputs and params."""

    model_config = ConfigDict(extra="forbid")
    deadline_seconds: float | None = Field(
        None, gt=0, le=7 * 24 * 3600,
        description="the job must start within this many seconds of submission, or it ends `aborted`",
    )
    webhook: WebhookRequest | None = Field(None, description="deliver this job's events to a URL")


class JobRequest(JobOptions):
    """The envelope as the route validates it; the method's params are then checked against the registry."""

    method: str = Field(description="a registered method name (GET /v1/methods)", examples=["classify"])
    model: str = Field(description="a model name (GET /v1/models)", examples=["efficientnet_lite0"])
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="input slot -> its pictures, named as in inline calls (read by api.picture_refs)",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="the method's params (its params_schema)")


class JobProgress(BaseModel):
    step: int
    total: int
    fraction: float | None = None
    elapsed_seconds: float | None = None
    eta_seconds: float | None = None
    info: dict[str, Any] = Field(default_factory=dict, description="the method's own numbers (loss, ...)")
    preview_step: int | None = None
    preview_url: str | None = Field(None, description="the latest preview picture (synthesis methods)")


class JobQueue(BaseModel):
    """Where a queued job stands (absent once it runs): see docs/jobs.md, "Queue position and estimate"."""

    position: int = Field(ge=0, description="unfinished jobs of the same queue ahead of it (queued or running); 0: next for a free worker")
    estimated_wait_seconds: float | None = Field(
        None, ge=0, description="about how long until a worker takes it, from recent runs of the methods ahead; null: no recent run known",
    )
    based_on: int = Field(ge=0, description="how many recent runs the estimate draws on")


class JobArtifact(BaseModel):
    name: str = Field(description="file name: <image>.png, <array>.npy, result.json")
    kind: Literal["image", "array", "data"]
    media_type: str
    bytes: int
    main: bool
    url: str = Field(description="download through the API")
    download_url: str | None = Field(None, description="a presigned object-store URL, when the store has one")


class JobError(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    message: str


class JobLinks(BaseModel):
    self: str
    events: str


class JobOut(BaseModel):
    """A job as every job route answers it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": "18ed3fda142f008f5452b2e6", "state": "running", "method": "style_transfer", "model": "vgg19",
        "params": {"steps": 300}, "inputs": {"content": "<image id>", "style": ["<image id>"]},
        "content_hash": "<sha256>", "deliveries": 1, "worker": "gpu-1:4242", "cancel_requested": False,
        "created_at": "2026-12-01T21:00:00+00:00", "started_at": "2026-12-01T21:00:01+00:00",
        "progress": {"step": 120, "total": 300, "fraction": 0.4, "eta_seconds": 30.5, "info": {"loss": 1.9e8},
                     "preview_url": "/v1/jobs/18ed3fda142f008f5452b2e6/preview?step=120"},
        "artifacts": [], "links": {"self": "/v1/jobs/18ed3fda142f008f5452b2e6",
                                   "events": "/v1/jobs/18ed3fda142f008f5452b2e6/events"},
    }]})

    id: str
    state: Literal[STATES]
    method: str
    model: str
    params: dict[str, Any]
    inputs: dict[str, str | list[str]]
    content_hash: str
    request_id: str | None = Field(None, description="the X-Request-ID of the submission")
    deliveries: int
    worker: str | None = None
    cancel_requested: bool
    cancel_requested_at: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    deadline_at: str | None = None
    webhook: WebhookRequest | None = None
    progress: JobProgress | None = None
    queue: JobQueue | None = Field(None, description="a queued job's position and estimated wait; null once it runs")
    error: JobError | None = None
    artifacts: list[JobArtifact]
    result: dict[str, Any] | None = None
    links: JobLinks


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None = None


def _slot(slot: InputSlot) -> tuple[Any, Any]:
    what = f"a list of pictures (each {FORMS}), or {{\"collection\": id}}" if slot.many else FORMS
    kind: Any = list[PictureRef] | CollectionRef if slot.many else PictureRef
    if slot.optional:
        return kind | None, Field(None, description=f"{slot.description}: {what}")
    return kind, Field(description=f"{slot.description}: {what}")


def job_request_model(method: Method) -> type[BaseModel]:
    """``{"method": <name>, "model", "inputs", "params", ...options}`` typed for ``method``."""
    name = camel(method.name)
    inputs = create_model(
        f"{name}JobInputs", __config__=ConfigDict(extra="forbid"), **{slot.name: _slot(slot) for slot in method.inputs}
    )
    inputs_field = Field(default_factory=dict) if not any(not slot.optional for slot in method.inputs) else Field()
    return create_model(
        f"{name}JobRequest",
        __base__=JobOptions,
        __doc__=f"A {method.name} job: {method.summary}",
        method=(Literal[method.name], Field(description="the method to run")),
        model=(str, Field(description="a model name from GET /v1/models (vgg19 for the style and texture methods)")),
        inputs=(inputs, inputs_field),
        params=(method.params, Field(default_factory=dict, description="omitted fields take their defaults")),
    )


def job_request_example(method: Method) -> dict:
    inputs = {
        slot.name: [f"<image id {i}>" for i in range(1, slot.min_count + 1)] if slot.many else "<image id>"
        for slot in method.inputs
        if not slot.optional
    }
    model = DEFAULT_MODEL if method.category != "synthesize" or method.name == "class_visualization" else "vgg19"
    return {"method": method.name, "model": model, "inputs": inputs, "params": {}}


def job_components(methods: list[Method] | None = None) -> tuple[dict, dict[str, dict]]:
    """The ``POST /v1/jobs`` request body (a oneOf discriminated by method) and the schemas it refers to."""
    methods = all_methods() if methods is None else methods
    requests = {method.name: job_request_model(method) for method in methods}
    keyed = [(model, "validation") for model in requests.values()]
    keyed += [(JobOut, "serialization"), (JobPage, "serialization"), (ProblemDetails, "serialization")]
    refs, definitions = models_json_schema(keyed, ref_template=REF)
    union = {
        "oneOf": [refs[(model, "validation")] for model in requests.values()],
        "discriminator": {
            "propertyName": "method",
            "mapping": {name: refs[(model, "validation")]["$ref"] for name, model in requests.items()},
        },
    }
    examples = {method.name: {"summary": method.summary, "value": job_request_example(method)} for method in methods}
    body = {"required": True, "content": {"application/json": {"schema": union, "examples": examples}}}
    return body, definitions.get("$defs", {})

