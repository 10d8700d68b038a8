"""Drawing shared by the inspect methods: which channels to draw, normalised tiles, nearest-neighbour
upscaling (a 3x3 filter stays nine crisp squares) and captioned thumbnails."""

import numpy as np
from PIL import Image, ImageDraw

from engine.errors import UnknownChannel
from engine.imaging import normalize_map

def pick_channels(requested: list[int] | None, available: int, limit: int) -> list[int]:
    """The channels to draw: ``requested`` (checked, duplicates dropped, order kept) or the first ones, at most ``limit``."""
    if requested is None:
        return list(range(min(available, limit)))
    bad = [c for c in requested if not 0 <= c < available]
    if bad:
        raise UnknownChannel(f"the layer has {available} channels (0..{available - 1}); got {bad}")
    return list(dict.fromkeys(requested))[:limit]


def normalise_tiles(values: np.ndarray, each: bool) -> np.ndarray:
    """Min-max scale each item (first axis) on its own, or all items together, to [0, 1]."""
    if not each:
        return normalize_map(values, "minmax")
    return np.stack([normalize_map(tile, "minmax") for tile in values]) if len(values) else values.astype(np.float32)


def to_uint8(values01: np.ndarray) -> np.ndarray:
    return (np.clip(values01, 0, 1) * 255).round().astype(np.uint8)


def zoom_for(side: int, target: int) -> int:
    """The integer factor that brings a tile of ``side`` pixels to at least ``target``."""
    return max(1, -(-target // max(side, 1)))


def upscale(tiles: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (N, H, W[, 3]) tiles by an integer factor."""
    return tiles.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else tiles


def thumbnail(image: Image.Image, side: int) -> Image.Image:
    """A square ``side`` x ``side`` copy (images here are already fitted to one size)."""
    resample = Image.NEAREST if side >= max(image.size) else Image.BILINEAR
    return image.convert("RGB").resize((side, side), resample)


def captioned(image: Image.Image, text: str, height: int = 14) -> np.ndarray:
    """``image`` with a white strip and ``text`` under it, as a uint8 RGB array."""
    canvas = Image.new("RGB", (image.width, image.height + height), "white")
    canvas.paste(image, (0, 0))
    ImageDraw.Draw(canvas).text((2, image.height + 1), text, fill="black")
    return np.asarray(canvas)
