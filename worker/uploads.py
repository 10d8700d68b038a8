"""Uploaded images: one safe decoder, content-hash ids, storage under ``images/<id>``.

An image is stored once as the client sent it (after it decodes safely) and
named by the hash of its bytes, so the same upload twice is the same id and
identical jobs can be recognised by their input ids.
"""

import hashlib
import io
import re
import warnings
from dataclasses import asdict, dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from worker.storage import ObjectNotFound, Storage

FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}
_IMAGE_ID = re.compile(r"[0-9a-f]{32}")


class ImageRejected(Exception):
    """An upload that is not a safe, decodable image; ``code`` says why."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


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


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode an untrusted upload into an upright RGB image, or raise ImageRejected.

    The header is checked first (format whitelist, pixel count) so a
    decompression bomb is refused before any pixel is decoded; ``verify`` then
    walks the file for corruption, and the real decode runs with Pillow's
    bomb warning raised as an error.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in FORMATS:
                    raise ImageRejected("unsupported_image", f"image format {probe.format} is not accepted; use one of {', '.join(FORMATS)}")
                if probe.width * probe.height > max_pixels:
                    raise ImageRejected("image_too_large", f"{probe.width}x{probe.height} exceeds the limit of {max_pixels} pixels")
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                return ImageOps.exif_transpose(image).convert("RGB")
    except UnidentifiedImageError:
        raise ImageRejected("unsupported_image", "the upload is not an image in a supported format") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("image_too_large", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected("bad_image", f"the image could not be decoded: {exc}") from None


def image_key(image_id: str) -> str:
    if not _IMAGE_ID.fullmatch(image_id or ""):
        raise UnknownImage(image_id)
    return f"images/{image_id}"


def store_image(storage: Storage, data: bytes, max_pixels: int) -> tuple[StoredImage, bool]:
    """Validate and store an upload; returns its description and whether it was new."""
    image = decode_image(data, max_pixels)
    with Image.open(io.BytesIO(data)) as probe:
        kind = probe.format
    stored = StoredImage(hashlib.sha256(data).hexdigest()[:32], image.width, image.height, kind, FORMATS[kind], len(data))
    key = image_key(stored.id)
    if storage.exists(key):
        return stored, False
    storage.put(key, data, stored.media_type)
    return stored, True


def read_image(storage: Storage, image_id: str) -> tuple[bytes, str]:
    """The stored bytes of an image and their media type."""
    try:
        data = storage.get(image_key(image_id))
    except ObjectNotFound:
        raise UnknownImage(image_id) from None
    with Image.open(io.BytesIO(data)) as probe:
        return data, FORMATS[probe.format]


def load_image(storage: Storage, image_id: str, max_pixels: int) -> Image.Image:
    data, _ = read_image(storage, image_id)
    return decode_image(data, max_pixels)


def require_images(storage: Storage, image_ids: list[str]) -> None:
    """Raise UnknownImage for the first id that was never uploaded."""
    for image_id in image_ids:
        if not storage.exists(image_key(image_id)):
            raise UnknownImage(image_id)
