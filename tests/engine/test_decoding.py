"""Untrusted picture bytes -> upright RGB pictures, or ImageRejected with the right code."""

import numpy as np
import pytest
from PIL import Image, ImageFile

from engine.decoding import decode_base64, decode_image, image_format
from engine.errors import EngineError, ImageRejected
from tests.pictures import encode, png_claiming

LIMIT = 40_000_000


def rejected(data: bytes, max_pixels: int = LIMIT) -> str:
    with pytest.raises(ImageRejected) as caught:
        decode_image(data, max_pixels)
    return caught.value.code


@pytest.mark.parametrize("format", ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_whitelisted_format_decodes_to_rgb(small_chelsea, format):
    data = encode(small_chelsea, format)
    image = decode_image(data, LIMIT)
    assert image.mode == "RGB" and image.size == small_chelsea.size
    assert image_format(data) == format


def test_photos_decode_exactly(chelsea):
    image = decode_image(encode(chelsea.convert("RGBA")), 1_000_000)  # opaque alpha is dropped, pixels kept
    assert image.mode == "RGB" and image.size == chelsea.size
    assert np.array_equal(np.asarray(image), np.asarray(chelsea))
    assert decode_image(encode(chelsea, "JPEG", quality=90), 1_000_000).size == chelsea.size


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


def float_tiff(values: list[list[float]]) -> bytes:
    return encode(Image.fromarray(np.array(values, dtype=np.float32), "F"), "TIFF")


def test_float_greyscale_is_scaled_from_unit_or_byte_range():
    assert decode_image(float_tiff([[0.0, 0.5, 1.0]]), LIMIT).getpixel((1, 0)) == (128, 128, 128)
    assert decode_image(float_tiff([[0.0, 100.0, 255.0]]), LIMIT).getpixel((1, 0)) == (100, 100, 100)


@pytest.mark.parametrize("values", [[[float("nan")] * 3] * 2, [[0.2, float("nan"), 0.4]], [[0.1, float("inf"), 0.9]],
                                    [[0.1, float("-inf"), 0.9]]], ids=["all-nan", "one-nan", "inf", "minus-inf"])
def test_float_pixels_that_are_not_numbers_are_refused_not_blackened(values):
    with pytest.raises(ImageRejected) as caught:
        decode_image(float_tiff(values), LIMIT, "content")
    assert caught.value.code == "bad_image" and caught.value.input == "content"
    assert "NaN or infinite" in caught.value.message and "content" in caught.value.message


def test_base64_and_data_urls():
    assert decode_base64("aGVsbG8=") == b"hello"
    assert decode_base64("data:image/png;base64,aGVsbG8=") == b"hello"
    with pytest.raises(ImageRejected) as caught:
        decode_base64("not base64!!", "style[1]")
    assert (caught.value.code, caught.value.input) == ("bad_base64", "style[1]")


def test_bad_bytes_have_their_own_codes(small_chelsea):
    assert rejected(b"") == "empty_image"
    assert rejected(b"this is a text file, not a picture") == "not_an_image"
    assert rejected(encode(small_chelsea, "JPEG")[:600]) == "bad_image"
    assert rejected(encode(small_chelsea, "PNG")[:-300]) == "bad_image"
    png = encode(small_chelsea)
    assert rejected(png[: len(png) // 2]) == "bad_image"


def test_other_image_formats_are_unsupported(small_chelsea):
    assert rejected(encode(small_chelsea, "PPM")) == "unsupported_image_format"
    assert rejected(encode(small_chelsea, "ICO")) == "unsupported_image_format"
    with pytest.raises(ImageRejected) as caught:
        image_format(encode(small_chelsea, "PPM"))
    assert caught.value.code == "unsupported_image_format"


def test_rejections_name_their_input_and_are_engine_errors():
    with pytest.raises(EngineError) as caught:
        decode_image(b"not a picture", LIMIT, "images[2]")
    assert isinstance(caught.value, ImageRejected)
    assert caught.value.input == "images[2]" and caught.value.message.startswith("images[2]: ")


@pytest.mark.parametrize("width, height, limit", [(3000, 3000, 1_000_000), (100_000, 100_000, LIMIT)])
def test_decompression_bombs_are_refused_without_decoding(monkeypatch, width, height, limit):
    decoded = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: decoded.append(image.size) or real_load(image))
    assert rejected(png_claiming(width, height), limit) == "image_too_large"
    assert decoded == []  # refused from the header: no pixel buffer was ever allocated
    decode_image(encode(Image.new("RGB", (20, 10))), limit)
    assert set(decoded) == {(20, 10)}  # the spy does see real decodes


def test_a_real_picture_over_the_pixel_limit_is_too_large():
    assert rejected(encode(Image.new("RGB", (4000, 3000))), max_pixels=1_000_000) == "image_too_large"


def test_pixel_values_make_the_same_picture(small_chelsea):
    """Nested lists of pixel values (KServe's V1 instances) decode to exactly the picture they list."""
    from engine.decoding import decode_pixels

    pixels = np.asarray(small_chelsea)
    assert np.array_equal(np.asarray(decode_pixels(pixels.tolist(), 255, LIMIT)), pixels)
    assert np.array_equal(np.asarray(decode_pixels((pixels / 255.0).tolist(), 1.0, LIMIT)), pixels)  # values in [0, 1]
    grey = pixels[:, :, 0]
    for values in (grey.tolist(), grey[:, :, None].tolist()):
        assert np.array_equal(np.asarray(decode_pixels(values, 255, LIMIT)), np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize("values, code", [
    ([[1, 2], [3]], "bad_pixels"),  # ragged
    ([["12"]], "bad_pixels"),  # strings are not numbers
    ([[True]], "bad_pixels"),
    ([[[1, 2]]], "bad_pixels"),  # two channels
    ([[[[1, 2, 3]]]], "bad_pixels"),  # a batch, not a picture
    ([], "bad_pixels"),
    ([[0, 256]], "bad_pixels"),  # out of range
    ([[float("nan")]], "bad_pixels"),
    ([[0] * 5] * 5, "image_too_large"),
])
def test_bad_pixel_values_are_refused_naming_the_input(values, code):
    from engine.decoding import decode_pixels

    with pytest.raises(ImageRejected) as caught:
        decode_pixels(values, 255, 24, "instances[3]")
    assert caught.value.code == code and caught.value.input == "instances[3]"
    assert "instances[3]" in caught.value.message
