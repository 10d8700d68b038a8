"""Uploaded images: content-hash ids, storage under ``images/<tenant>/<id>``.

An image is stored once per tenant as the client sent it (after it decodes
safely with :func:`engine.decoding.decode_image`) and named by the hash of its
bytes, so the same upload twice is the same id and identical jobs can be
recognised by their input ids. Every call takes the tenant that owns the
image: another tenant's id is simply not found (UnknownImage). Images of the
shared owner (the built-in samples collection) are readable by every tenant.
"""

import hashlib
import re
from dataclasses import asdict, dataclass

from PIL import Image

from engine.decoding import MEDIA_TYPES, decode_image, image_format
from worker.storage import ObjectNotFound, Storage, check_key

_IMAGE_ID = re.compile(r"[0-9a-f]{32}")


class UnknownImage(Exception):
    def __init__(self, image_id: str):
        super().__init__(f"unknown image {image_id!r}; upload it first with POST /v1/images")
        self.image_id = image_id


@dataclass(frozen=True)
class StoredImage:
    id: str
    width: int
    height: int
    format: str
    media_type: str
    bytes: int

    def as_dict(self) -> dict:
        return asdict(self)


SHARED = "builtin"  # the owner of images every tenant may read (the built-in samples collection's)


def content_id(data: bytes) -> str:
    """The id an upload of these bytes gets."""
    return hashlib.sha256(data).hexdigest()[:32]


def image_key(image_id: str, tenant: str) -> str:
    if not _IMAGE_ID.fullmatch(image_id or ""):
        raise UnknownImage(image_id)
    return check_key(f"images/{tenant}/{image_id}")


def store_image(storage: Storage, data: bytes, max_pixels: int, tenant: str) -> tuple[StoredImage, bool]:
    """Validate and store an upload (ImageRejected when it is no safe picture).

    Returns its description and whether it was new.
    """
    image = decode_image(data, max_pixels)
    kind = image_format(data)
    stored = StoredImage(content_id(data), image.width, image.height, kind, MEDIA_TYPES[kind], len(data))
    key = image_key(stored.id, tenant)
    new = not storage.exists(key)
    storage.put(key, data, stored.media_type)  # again when known: an upload's retention counts from its last upload
    return stored, new


def image_bytes(storage: Storage, image_id: str, tenant: str) -> bytes:
    """The stored bytes of the tenant's image, or of a shared one (UnknownImage for an id it never uploaded, or malformed)."""
    for owner in (tenant, SHARED):
        try:
            return storage.get(image_key(image_id, owner))
        except ObjectNotFound:
            continue
    raise UnknownImage(image_id)


def read_image(storage: Storage, image_id: str, tenant: str) -> tuple[bytes, str]:
    """The stored bytes of an image and their media type."""
    data = image_bytes(storage, image_id, tenant)
    return data, MEDIA_TYPES[image_format(data, image_id)]


def load_image(storage: Storage, image_id: str, max_pixels: int, tenant: str) -> Image.Image:
    return decode_image(image_bytes(storage, image_id, tenant), max_pixels, image_id)


def require_images(storage: Storage, image_ids: list[str], tenant: str) -> None:
    """Raise UnknownImage for the first id the tenant never uploaded."""
    for image_id in image_ids:
        if not any(storage.exists(image_key(image_id, owner)) for owner in (tenant, SHARED)):
            raise UnknownImage(image_id)
