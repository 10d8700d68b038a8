"""Request and response schemas of the inline routes, generated per method.

The request models exist for validation of the JSON envelope and for the
OpenAPI document; one is made for every registered method from its inputs and
its params model, so a new method is documented with no code.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from api.picture_refs import CollectionRef, PictureRef
from engine.registry import InputSlot, Method

DEFAULT_MODEL = "efficientnet_lite0"


class Envelope(BaseModel):
    """The JSON request's shape, common to every method (params and inputs checked per method)."""

    model_config = ConfigDict(extra="forbid")
    model: str = DEFAULT_MODEL
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict, description="input slot -> its pictures (read by api.picture_refs)")


class ArtifactOut(BaseModel):
    name: str
    kind: Literal["image", "array"]
    media_type: str = Field(description="image/png for images, application/x-npy (numpy .npy) for arrays")
    width: int | None = Field(None, description="images only")
    height: int | None = Field(None, description="images only")
    shape: list[int] | None = Field(None, description="arrays only")
    dtype: str | None = Field(None, description="arrays only, numpy dtype string (e.g. '<f4')")
    data_base64: str | None = Field(None, description="the bytes, when embedded (?embed=)")
    url: str | None = Field(None, description="where to download it, when linked (valid for a few minutes)")


class InlineResult(BaseModel):
    """What every method answers (JSON)."""

    method: str
    model: str
    main: str | None = Field(description="the artifact returned for Accept: image/png")
    data: dict[str, Any] = Field(description="the method's findings plus method, model, params and timings (ms)")
    artifacts: list[ArtifactOut]


class PictureOut(BaseModel):
    position: int = Field(description="its place among the request's pictures")
    id: str | None = Field(description="the stored image's id, if it was named by one")
    name: str | None = Field(description="a collection's name for it, or a multipart file's name")


class EachResult(BaseModel):
    """One picture's answer: its result (as InlineResult), or the problem it ran into."""

    picture: PictureOut
    method: str | None = None
    model: str | None = None
    main: str | None = None
    data: dict[str, Any] | None = None
    artifacts: list[ArtifactOut] | None = None
    problem: dict[str, Any] | None = Field(None, description="problem details (status, code, detail) of a picture with no result")


class InlineResults(BaseModel):
    """What a method that takes several pictures answers for a list, a collection or repeated files (JSON):
    one entry per picture, in order."""

    method: str
    model: str
    results: list[EachResult]


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; ``code`` is stable and machine-readable."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _slot_field(slot: InputSlot, several: bool) -> tuple[Any, Any]:
    if several:
        kind: Any = PictureRef | list[PictureRef] | CollectionRef
        field = Field(description=f"{slot.description}; several pictures (a list, or a collection) get one answer each")
    elif slot.many:
        kind = list[PictureRef] | CollectionRef
        field = Field(description=f"{slot.description} ({slot.min_count}..{slot.max_count} images, or a collection)")
    else:
        kind = PictureRef
        field = Field(description=slot.description)
    if slot.optional:
        return kind | None, Field(None, description=slot.description)
    return kind, field


def json_request_model(method: Method) -> type[BaseModel]:
    """``{"model", "params", "inputs"}`` typed for ``method`` (documentation of the JSON form)."""
    inputs = create_model(
        f"{camel(method.name)}Inputs",
        __config__=ConfigDict(extra="forbid"),
        **{slot.name: _slot_field(slot, method.takes_several) for slot in method.inputs},
    )
    return create_model(
        f"{camel(method.name)}Request",
        __config__=ConfigDict(extra="forbid"),
        model=(str, Field(DEFAULT_MODEL, description="a model name from GET /v1/models")),
        params=(method.params, Field(default_factory=dict, description="omitted fields take their defaults")),
        inputs=(inputs, ...),
    )


BINARY = {"type": "string", "format": "binary"}


def upload_body(properties: dict[str, Any], required: list[str], raw: str | None = None) -> dict:
    """``openapi_extra`` of a route that reads its own body: a multipart form with these fields and, with ``raw``,
    the bytes themselves as that media type."""
    content: dict[str, Any] = {"multipart/form-data": {"schema": {"type": "object", "properties": properties, "required": required}}}
    if raw:
        content[raw] = {"schema": BINARY}
    return {"requestBody": {"required": True, "content": content}}


def multipart_schema(method: Method, params_ref: dict) -> dict:
    """The multipart/form-data form of the same request (OpenAPI schema)."""
    properties: dict[str, Any] = {
        "model": {"type": "string", "default": DEFAULT_MODEL, "description": "a model name from GET /v1/models"},
        "params": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": params_ref,
            "description": "the params as a JSON object (optional; omitted fields take their defaults)",
        },
    }
    for slot in method.inputs:
        if slot.many:
            properties[slot.name] = {
                "type": "array",
                "items": BINARY,
                "minItems": slot.min_count,
                "maxItems": slot.max_count,
                "description": f"{slot.description} (repeat the field, {slot.min_count}..{slot.max_count} files)",
            }
        elif method.takes_several:
            properties[slot.name] = {"anyOf": [BINARY, {"type": "array", "items": BINARY}],
                                     "description": f"{slot.description}; repeat the field for several pictures, one answer each"}
        else:
            properties[slot.name] = {**BINARY, "description": slot.description}
    required = [slot.name for slot in method.inputs if not slot.optional]
    return {"type": "object", "properties": properties, "required": required}
