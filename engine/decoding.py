"""Untrusted bytes -> a safe RGB picture, or :class:`ImageRejected` naming what is wrong.

The one decoder for every picture a client sends: inline requests, uploads
and the stored inputs a worker reads back. Pure in-memory, no files.

- only whitelisted formats are parsed (other real formats:
  ``unsupported_image_format``; anything else: ``not_an_image``);
- the pixel count is read from the header and checked against ``max_pixels``
  before anything is decoded, so a decompression bomb never allocates
  (``image_too_large``); the limit is per call, not Pillow's process-wide
  ``Image.MAX_IMAGE_PIXELS``, whose own bomb error also counts as too large;
- decoding runs inside ``try`` so truncated or corrupt files are ``bad_image``;
- EXIF orientation is applied; every mode (palette, greyscale, 16-bit, float,
  CMYK, with or without alpha) becomes 8-bit RGB, transparency composited on white;
  float pixels that are NaN or infinite are ``bad_image`` (never made black or white).

A picture may also come as pixel values (:func:`decode_pixels`: nested lists,
as KServe's V1 protocol sends arrays), checked for shape, range and count
before any picture is made.

Resizing to the model's input size is not done here: it is each method's
``fit`` param (``engine.imaging.fit_image``).
"""

import base64
import binascii
import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import ImageRejected

MEDIA_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
FORMATS = tuple(MEDIA_TYPES)
SIXTEEN_BIT_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


def decode_base64(text: str, label: str = "image") -> bytes:
    """Standard base64, optionally as a ``data:<type>;base64,`` URL."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("bad_base64", f"{label}: not valid base64", label) from None


def decode_pixels(values: object, max_value: float, max_pixels: int, label: str = "image") -> Image.Image:
    """``[height][width][3]`` (RGB), ``[height][width][1]`` or ``[height][width]`` (grey) numbers from 0 to
    ``max_value`` (255 for 8-bit values, 1.0 for values in [0, 1]) -> an 8-bit RGB picture.

    Ragged or non-numeric lists, another shape and values out of range are ``bad_pixels``; more than
    ``max_pixels`` pixels is ``image_too_large``, as for a file.
    """
    try:
        array = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        array = None
    if array is None or array.dtype.kind not in "iuf":  # ragged rows, strings, booleans, objects
        raise ImageRejected("bad_pixels", f"{label}: pixel values must be nested lists of numbers, rows of equal length", label)
    array = array.astype(np.float64)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)) or 0 in array.shape:
        raise ImageRejected("bad_pixels", f"{label}: pixel values shaped {list(array.shape)}; a picture is [height][width][3] (RGB), "
                            "[height][width][1] or [height][width] (grey)", label)
    height, width = array.shape[:2]
    if height * width > max_pixels:
        raise ImageRejected("image_too_large", f"{label}: {width}x{height} = {width * height} pixels; the limit is {max_pixels}", label)
    if not np.isfinite(array).all():
        raise ImageRejected("bad_pixels", f"{label}: pixel values must be finite numbers in [0, {max_value:g}]", label)
    if array.min() < 0 or array.max() > max_value:
        raise ImageRejected("bad_pixels", f"{label}: pixel values must lie in [0, {max_value:g}]; these span "
                            f"[{array.min():g}, {array.max():g}]", label)
    levels = np.rint(array * (255.0 / max_value)).astype(np.uint8)
    return Image.fromarray(levels if levels.ndim == 3 else np.repeat(levels[:, :, None], 3, axis=2), "RGB")


def image_format(data: bytes, label: str = "image") -> str:
    """The whitelisted format of ``data`` (``"PNG"``, ...), from its header only."""
    with _open(data, label) as image:
        return image.format


def decode_image(data: bytes, max_pixels: int, label: str = "image") -> Image.Image:
    """Decode one picture to upright 8-bit RGB (raises :class:`ImageRejected` on bad input)."""
    image = _open(data, label)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            "image_too_large", f"{label}: {width}x{height} = {width * height} pixels; the limit is {max_pixels}", label
        )
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return _to_rgb(image, label)
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise ImageRejected("image_too_large", f"{label}: too many pixels", label) from None
    except Exception as exc:  # any decoder failure on untrusted bytes is the client's bad file
        raise ImageRejected("bad_image", f"{label}: the {image.format} file is truncated or corrupt ({exc})", label) from None


def _open(data: bytes, label: str) -> Image.Image:
    """Parse the header with whitelisted decoders only."""
    if not data:
        raise ImageRejected("empty_image", f"{label}: the file is empty (0 bytes)", label)
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError:
        raise ImageRejected("image_too_large", f"{label}: too many pixels", label) from None
    except UnidentifiedImageError:
        pass
    except Exception as exc:
        raise ImageRejected("bad_image", f"{label}: unreadable image header ({exc})", label) from None
    found = _identify(data)
    if found:
        raise ImageRejected(
            "unsupported_image_format",
            f"{label}: {found} images are not accepted; send one of {', '.join(FORMATS)}",
            label,
        )
    raise ImageRejected("not_an_image", f"{label}: not an image ({', '.join(FORMATS)} accepted)", label)


def _identify(data: bytes) -> str | None:
    """The format name of a non-whitelisted image, from its header only (never decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as other:
            return other.format
    except Exception:
        return None


def _to_rgb(image: Image.Image, label: str) -> Image.Image:
    if image.mode in SIXTEEN_BIT_MODES:
        levels = np.clip(np.asarray(image, dtype=np.float32), 0, 65535) / 257.0
        image = Image.fromarray(levels.round().astype(np.uint8), "L")
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        finite = np.isfinite(values)
        if not finite.all():
            raise ImageRejected("bad_image", f"{label}: {values.size - int(finite.sum())} of the {values.size} float pixels are NaN or "
                                "infinite; send finite values (in [0, 1] or [0, 255])", label)
        values = values * 255.0 if values.max(initial=0.0) <= 1.0 else values
        image = Image.fromarray(np.clip(values, 0, 255).round().astype(np.uint8), "L")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
