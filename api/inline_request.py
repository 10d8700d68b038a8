"""An inline request, in either form, -> model name, raw params and the pictures per input slot.

Two forms share one route:

- ``multipart/form-data``: fields ``model``, ``params`` (a JSON object) and one
  file field per input slot (repeated for slots that take several images);
- ``application/json``: ``{"model", "params", "inputs": {slot: picture}}``, a
  picture named as :mod:`api.picture_refs` reads it.

:func:`receive` only reads bytes (on the event loop); :func:`parse` and
:func:`decode_inputs` do the CPU work and run in the inline pool. The params
and the picture counts are validated by :func:`engine.run.prepare`, as for jobs.
"""

from dataclasses import dataclass, field
from typing import Callable

from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from api.json_response import read_json
from api.multipart import read_form
from api.problems import Problem, invalid_request
from api.picture_refs import CollectionRef, ImageResolver, Picture, decode_picture, slot_pictures
from api.schemas import DEFAULT_MODEL, Envelope
from engine.registry import Inputs, InputSlot, Method

CollectionResolver = Callable[[str], list[tuple[str, str]]]  # collection id -> [(image name, image id)]


@dataclass
class Form:
    model: str | None
    params: str | None
    files: dict[str, list[tuple[str | None, bytes]]] = field(default_factory=dict)  # slot -> [(file name, bytes)]


@dataclass
class InlineRequest:
    model: str
    params: dict
    uploads: dict[str, list[Picture]]  # by slot name; a list of one for a single picture
    many: frozenset[str]  # the slots that take a list
    several: bool = False  # several pictures for a method that takes_several: one answer per picture


async def receive(request: Request, method: Method) -> Form | bytes:
    """The request body: a parsed multipart form, or raw JSON bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_form(request, method)
    if content_type == "application/json":
        return await request.body()
    raise Problem(
        415,
        "unsupported_media_type",
        f"send multipart/form-data or application/json, not {content_type or 'no content type'}",
    )


async def _read_form(request: Request, method: Method) -> Form:
    slots = {slot.name: slot for slot in method.inputs}
    # Generous bounds (the body size is limited anyway) so that a few files too
    # many still reach the count check and its clearer answer.
    max_files = sum(slot.max_count if slot.many else 1 for slot in method.inputs) + 8
    form = await read_form(request, max_files=max_files, max_fields=8)
    try:
        return await _form_contents(form, method, slots)
    finally:
        await form.close()


async def _form_contents(form: FormData, method: Method, slots: dict[str, InputSlot]) -> Form:
    unknown = sorted(set(form.keys()) - {"model", "params", *slots})
    if unknown:
        raise Problem(
            422,
            "unknown_field",
            f"{method.name} takes no field {', '.join(map(repr, unknown))}; "
            f"fields: model, params, {', '.join(slots)}",
        )
    texts = {}
    for name in ("model", "params"):
        values = form.getlist(name)
        if len(values) > 1 or any(isinstance(value, UploadFile) for value in values):
            raise Problem(422, "invalid_field", f"field {name!r} must be sent once, as text")
        texts[name] = values[0] if values else None
    files: dict[str, list[tuple[str | None, bytes]]] = {}
    for name in slots:
        values = form.getlist(name)
        if any(not isinstance(value, UploadFile) for value in values):
            raise Problem(422, "invalid_field", f"field {name!r} must be a file upload", input=name)
        if values:
            files[name] = [(value.filename, await value.read()) for value in values]
    return Form(texts["model"], texts["params"], files)


def parse(method: Method, body: Form | bytes, collections: CollectionResolver | None = None) -> InlineRequest:
    """Read either form into one :class:`InlineRequest` (raises Problem for a malformed body).

    ``collections`` expands a JSON ``{"collection": id}`` input into its images (by id).
    """
    if isinstance(body, Form):
        model, raw_params, uploads = body.model or DEFAULT_MODEL, _form_params(body.params), _form_uploads(method, body)
        several = method.takes_several and any(len(files) > 1 for files in body.files.values())
    else:
        envelope = _envelope(body)
        model, raw_params, uploads = envelope.model, envelope.params, _json_uploads(method, envelope, collections)
        several = method.takes_several and any(isinstance(value, (list, dict)) and _is_many(value) for value in envelope.inputs.values())
    return InlineRequest(model, raw_params, uploads, frozenset(slot.name for slot in method.inputs if slot.many), several)


def _is_many(value) -> bool:
    return isinstance(value, list) or set(value) == {"collection"}


def _form_params(text: str | None) -> dict:
    if text is None or not text.strip():
        return {}
    try:
        value = read_json(text)
    except ValueError as exc:
        raise Problem(400, "malformed_params", f"field 'params' is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Problem(400, "malformed_params", "field 'params' must be a JSON object")
    return value


def _form_uploads(method: Method, form: Form) -> dict[str, list[Picture]]:
    uploads = {}
    for slot in method.inputs:
        if slot.name in form.files:
            files = form.files[slot.name]
            uploads[slot.name] = [Picture(_label(slot.name, i, slot.many), data=data, name=file_name)
                                  for i, (file_name, data) in enumerate(files)]
    return uploads


def _envelope(body: bytes) -> Envelope:
    try:
        document = read_json(body)
    except ValueError as exc:
        raise Problem(400, "malformed_json", f"the body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise Problem(422, "invalid_request", "the body must be a JSON object {model, params, inputs}")
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def _json_uploads(method: Method, envelope: Envelope, collections: CollectionResolver | None) -> dict[str, list[Picture]]:
    """The pictures by slot; a slot the method lacks is kept, for :func:`engine.run.prepare` to name it."""
    slots = {slot.name: slot for slot in method.inputs}
    uploads = {}
    for name, value in envelope.inputs.items():
        slot = slots.get(name)
        if slot is None:
            uploads[name] = [Picture(name)]
            continue
        pictures = slot_pictures(value, name, slot.many or method.takes_several)
        if isinstance(pictures, CollectionRef):
            if collections is None:
                raise Problem(422, "invalid_input", f"input {name!r} takes pictures here, not a collection", input=name)
            pictures = [Picture(f"{name}:{label}", image_id=image_id, name=label) for label, image_id in collections(pictures.collection)]
        uploads[name] = pictures
    return uploads


def _label(name: str, index: int, many: bool) -> str:
    return f"{name}[{index}]" if many else name


def decode_inputs(request: InlineRequest, max_pixels: int, resolve: ImageResolver) -> Inputs:
    """Every upload -> a safe RGB picture, shaped as the method's slots expect."""
    inputs: Inputs = {}
    for name, uploads in request.uploads.items():
        images = [decode_picture(up, max_pixels, resolve) for up in uploads]
        inputs[name] = images if name in request.many else images[0]
    return inputs
