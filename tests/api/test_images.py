"""Untrusted upload bytes -> RGB pictures, or the right problem."""

import numpy as np
import pytest
from PIL import Image, ImageFile

from api.images import decode_base64, decode_image
from api.problems import Problem
from tests.api.conftest import encode, png_claiming

LIMIT = 40_000_000


def problem_of(data: bytes, max_pixels: int = LIMIT) -> tuple[int, str]:
    with pytest.raises(Problem) as caught:
        decode_image(data, max_pixels)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_whitelisted_format_decodes_to_rgb(small_chelsea, format):
    image = decode_image(encode(small_chelsea, format), LIMIT)
    assert image.mode == "RGB" and image.size == small_chelsea.size


@pytest.mark.parametrize("orientation, transpose", [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90)])
def test_exif_orientation_rotates_the_picture(small_chelsea, orientation, transpose):
    exif = Image.Exif()
    exif[0x0112] = orientation
    image = decode_image(encode(small_chelsea, "JPEG", quality=95, exif=exif), LIMIT)
    expected = small_chelsea.transpose(transpose)
    assert image.size == expected.size
    assert np.abs(np.asarray(image, np.float32) - np.asarray(expected, np.float32)).mean() < 4


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (4, 2), (200, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    image = decode_image(encode(rgba), LIMIT)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 0)) == (127, 127, 127)
    assert image.getpixel((3, 1)) == (200, 0, 0)
    la = Image.new("LA", (2, 1), (50, 0))
    assert decode_image(encode(la), LIMIT).getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_transparency_greyscale_and_cmyk():
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 0, 0, 0])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 1
    image = decode_image(encode(palette), LIMIT)
    assert image.getpixel((0, 0)) == (10, 20, 30) and image.getpixel((1, 0)) == (255, 255, 255)
    assert decode_image(encode(Image.new("L", (3, 3), 77)), LIMIT).getpixel((1, 1)) == (77, 77, 77)
    cmyk = decode_image(encode(Image.new("CMYK", (3, 3), (0, 255, 255, 0)), "JPEG", quality=100), LIMIT)
    red, green, blue = cmyk.getpixel((1, 1))
    assert red > 240 and green < 15 and blue < 15


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    levels = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    image = decode_image(encode(Image.fromarray(levels)), LIMIT)
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (100, 100, 100), (255, 255, 255)]


def test_base64_and_data_urls():
    assert decode_base64("aGVsbG8=") == b"hello"
    assert decode_base64("data:image/png;base64,aGVsbG8=") == b"hello"
    with pytest.raises(Problem) as caught:
        decode_base64("not base64!!")
    assert (caught.value.status, caught.value.code) == (400, "bad_base64")


def test_bad_bytes_answer_400(small_chelsea):
    assert problem_of(b"") == (400, "empty_image")
    assert problem_of(b"this is a text file, not a picture") == (400, "not_an_image")
    assert problem_of(encode(small_chelsea, "JPEG")[:600]) == (400, "bad_image")
    assert problem_of(encode(small_chelsea, "PNG")[:-300]) == (400, "bad_image")


def test_other_image_formats_answer_415(small_chelsea):
    assert problem_of(encode(small_chelsea, "PPM")) == (415, "unsupported_image_format")
    assert problem_of(encode(small_chelsea, "ICO")) == (415, "unsupported_image_format")


@pytest.mark.parametrize("width, height, limit", [(3000, 3000, 1_000_000), (100_000, 100_000, LIMIT)])
def test_decompression_bombs_answer_413_without_decoding(monkeypatch, width, height, limit):
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or real_load(image))
    assert problem_of(png_claiming(width, height), limit) == (413, "image_too_large")
    assert decoded == []  # refused from the header: no pixel buffer was ever allocated
    decode_image(encode(Image.new("RGB", (20, 10))), limit)
    assert set(decoded) == {(20, 10)}  # the spy does see real decodes
