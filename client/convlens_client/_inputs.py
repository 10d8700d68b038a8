"""What a caller may pass as a picture: a path, bytes, a binary file, or a PIL image."""

import io
import os
from pathlib import Path
from typing import Any, Union

ImageLike = Union[str, os.PathLike, bytes, Any]


def image_file(image: ImageLike, label: str = "image") -> tuple[str, bytes, str]:
    """(filename, bytes, content type) for a multipart field."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        return path.name, path.read_bytes(), "application/octet-stream"
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"{label}.bin", bytes(image), "application/octet-stream"
    if hasattr(image, "save") and hasattr(image, "size"):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return f"{label}.png", buffer.getvalue(), "image/png"
    if hasattr(image, "read"):
        return getattr(image, "name", label), image.read(), "application/octet-stream"
    raise TypeError(f"{label}: pass a path, bytes, a binary file or a PIL image, not {type(image).__name__}")
