"""Picture bytes for tests: any Pillow format, and PNG headers that lie about their size."""

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header is rewritten to claim ``width`` x ``height`` pixels."""
    data = bytearray(encode(Image.new("RGB", (1, 1))))
    ihdr = bytearray(data[12:29])  # chunk type + 13 bytes of IHDR fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)
