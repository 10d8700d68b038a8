"""One way to name a picture in every request body: inline calls, jobs and stylize.

A picture is an uploaded image's id, as a bare string, ``{"image_id": id}`` or
``{"id": id}``, or the file itself as ``{"base64": ...}``. A slot that takes
several pictures takes a list of those (one alone is a list of one), or
``{"collection": id}`` for all of a collection's images. The forms are read by hand so that a wrong one gets one
sentence with an example, not a validator's trace of every alternative; the
models below document them in the OpenAPI schema.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Callable

from PIL import Image
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from api.problems import Problem
from engine.decoding import decode_base64, decode_image
from engine.picture_names import named

ImageResolver = Callable[[str], bytes]  # image id -> the stored file's bytes
FORMS = '"<image id>", {"image_id": "<image id>"} or {"base64": "<the file in base64>"}'


class Base64Image(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base64: str = Field(description="the file's bytes (PNG, JPEG, WEBP, GIF, BMP or TIFF) in standard base64; "
                        "a data: URL is accepted too")


class StoredImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: str = Field(validation_alias=AliasChoices("image_id", "id"),
                          description="the id of an image uploaded earlier (POST /v1/images); `id` is taken too")


class CollectionRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    collection: str = Field(description="a collection id (POST /v1/collections; 'samples' is built in): all its images, in order")


PictureRef = Annotated[str | StoredImage | Base64Image, Field(description=f"one picture: {FORMS}")]


@dataclass(frozen=True)
class Picture:
    """One picture of a request: a multipart file's bytes, base64 text, or the id of a stored image."""

    label: str  # where it was given: ``image``, ``images[2]``, ``images:<name>`` for a collection's
    data: bytes | None = None
    base64: str | None = None
    image_id: str | None = None
    name: str | None = None  # a collection's name for it, or a multipart file's name


def slot_pictures(value: Any, name: str, many: bool) -> list[Picture] | CollectionRef:
    """The pictures given for input slot ``name`` (422 ``invalid_input`` naming the slot and the forms)."""
    if isinstance(value, dict) and set(value) == {"collection"}:
        if not many:
            raise Problem(422, "invalid_input", f"input {name!r} takes one picture, not a collection", input=name)
        if not isinstance(value["collection"], str) or not value["collection"]:
            raise Problem(422, "invalid_input", f"input {name!r}: a collection is named by its id, e.g. {{\"collection\": \"samples\"}}", input=name)
        return CollectionRef(collection=value["collection"])
    if many and isinstance(value, list):
        return [picture(item, f"{name}[{i}]", name) for i, item in enumerate(value)]
    if isinstance(value, list):
        raise Problem(422, "invalid_input", f"input {name!r} takes one picture ({FORMS}), not a list", input=name)
    return [picture(value, name, name)]


def picture(value: Any, label: str, slot: str) -> Picture:
    if isinstance(value, str):
        return Picture(label, image_id=value)
    if isinstance(value, dict) and len(value) == 1:
        ((key, text),) = value.items()
        if isinstance(text, str) and key in ("image_id", "id"):
            return Picture(label, image_id=text)
        if isinstance(text, str) and key == "base64":
            return Picture(label, base64=text)
    raise Problem(422, "invalid_input", f"input {label!r}: a picture is {FORMS}; got {_shown(value)}", input=slot)


def picture_bytes(given: Picture, resolve: ImageResolver) -> bytes:
    """The file's bytes: as sent, decoded from base64, or read from the image store by ``resolve``."""
    if given.data is not None:
        return given.data
    if given.base64 is not None:
        return decode_base64(given.base64, given.label)
    return resolve(given.image_id)


def decode_picture(given: Picture, max_pixels: int, resolve: ImageResolver) -> Image.Image:
    """The picture, safely decoded (engine.decoding), carrying its id and name (engine.picture_names)."""
    return named(decode_image(picture_bytes(given, resolve), max_pixels, given.label), given.image_id, given.name)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
