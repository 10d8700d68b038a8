"""A Result's pictures and arrays as bytes: PNG for images, ``.npy`` for arrays.

Shared by the API (inline answers) and the worker (stored artifacts); pure
in-memory encoding, no files. ``compress_level`` trades size for speed: 1 for
inline answers, where encoding time is latency, higher for stored artifacts.
"""

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from engine.result import Result

PNG = "image/png"
NPY = "application/x-npy"


@dataclass(frozen=True)
class Artifact:
    """One encoded picture or array, with what a client needs to read it."""

    name: str
    kind: Literal["image", "array"]
    media_type: str
    content: bytes
    width: int | None = None
    height: int | None = None
    shape: tuple[int, ...] | None = None
    dtype: str | None = None

    def describe(self) -> dict:
        """Everything but the bytes (JSON-able)."""
        info: dict = {"name": self.name, "kind": self.kind, "media_type": self.media_type}
        if self.kind == "image":
            info.update(width=self.width, height=self.height)
        else:
            info.update(shape=list(self.shape), dtype=self.dtype)
        return info


def png_bytes(image: Image.Image, compress_level: int = 1) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def encode_image(name: str, image: Image.Image, compress_level: int = 1) -> Artifact:
    return Artifact(name, "image", PNG, png_bytes(image, compress_level), width=image.width, height=image.height)


def encode_array(name: str, array: np.ndarray) -> Artifact:
    array = np.asarray(array)
    return Artifact(name, "array", NPY, npy_bytes(array), shape=tuple(array.shape), dtype=array.dtype.str)


def has_artifact(result: Result, name: str) -> bool:
    return name in result.images or name in result.arrays


def encode_artifact(result: Result, name: str, compress_level: int = 1) -> Artifact:
    """The artifact ``name`` (an image or an array) of ``result``; KeyError when it has none."""
    if name in result.images:
        return encode_image(name, result.images[name], compress_level)
    if name in result.arrays:
        return encode_array(name, result.arrays[name])
    raise KeyError(name)


def encode_result(result: Result, compress_level: int = 1) -> list[Artifact]:
    """Every image, then every array, in the order the method produced them."""
    return [encode_image(name, image, compress_level) for name, image in result.images.items()] + [
        encode_array(name, array) for name, array in result.arrays.items()
    ]
