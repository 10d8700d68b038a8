"""The one safe decoder for uploads, content-hash ids and image storage."""

import io

import numpy as np
import pytest
from PIL import Image

from worker.storage import FilesystemStorage
from worker.uploads import ImageRejected, UnknownImage, decode_image, load_image, read_image, require_images, store_image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rejected(data: bytes, max_pixels: int = 10_000_000) -> str:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, max_pixels)
    return caught.value.code


def test_decodes_photos_to_rgb(chelsea):
    rgba = chelsea.convert("RGBA")
    image = decode_image(encode(rgba), 1_000_000)
    assert image.mode == "RGB" and image.size == chelsea.size
    assert np.array_equal(np.asarray(image), np.asarray(chelsea))
    assert decode_image(encode(chelsea, "JPEG", quality=90), 1_000_000).size == chelsea.size


def test_exif_orientation_is_applied(chelsea):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees clockwise
    upright = decode_image(encode(chelsea, "JPEG", exif=exif), 1_000_000)
    assert upright.size == (chelsea.height, chelsea.width)


def test_bad_uploads_get_their_own_codes(chelsea):
    png = encode(chelsea)
    assert rejected(png[: len(png) // 2]) == "bad_image"
    assert rejected(b"plain text, not an image") == "unsupported_image"
    assert rejected(encode(chelsea, "PPM")) == "unsupported_image"  # decodable, but not whitelisted
    assert rejected(encode(Image.new("RGB", (4000, 3000))), max_pixels=1_000_000) == "image_too_large"


def test_store_dedups_by_content_and_reads_back(tmp_path, chelsea, coffee):
    storage = FilesystemStorage(tmp_path)
    data = encode(chelsea)
    first, created = store_image(storage, data, 1_000_000)
    again, created_again = store_image(storage, data, 1_000_000)
    other, _ = store_image(storage, encode(coffee, "JPEG"), 1_000_000)
    assert created and not created_again and first == again
    assert other.id != first.id and other.media_type == "image/jpeg"
    assert (first.width, first.height, first.format, first.bytes) == (chelsea.width, chelsea.height, "PNG", len(data))
    assert read_image(storage, first.id) == (data, "image/png")
    assert np.array_equal(np.asarray(load_image(storage, first.id, 1_000_000)), np.asarray(chelsea))
    require_images(storage, [first.id, other.id])
    for bad in ("f" * 32, "../../etc/passwd", "ABC"):
        with pytest.raises(UnknownImage):
            require_images(storage, [first.id, bad])
