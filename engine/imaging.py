"""Pictures <-> tensors and the drawing every method shares (no I/O).

Tensors are RGB in [0, 1], shape (1, 3, H, W). Resizing to a model's input
size uses one of three documented policies:

- ``stretch`` (default): the whole picture, resized to H x W, aspect not kept.
  Maps then cover every pixel the client sent.
- ``crop``: shorter side to the target, centre crop (ImageNet evaluation style).
- ``pad``: longer side to the target, padded with the dataset mean colour.
"""

from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image

Fit = Literal["stretch", "crop", "pad"]
COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "turbo": cv2.COLORMAP_TURBO,
    "hot": cv2.COLORMAP_HOT,
    "gray": None,
    "coolwarm": "diverging",
}
Colormap = Literal["jet", "viridis", "inferno", "magma", "turbo", "hot", "gray", "coolwarm"]
# Diverging map for signed values: blue (-1) -> near-white (0, at index 128) -> red (+1).
_BLUE, _CENTRE, _RED = np.array([33, 102, 172.0]), np.array([247, 247, 247.0]), np.array([178, 24, 43.0])
DIVERGING_CENTRE = tuple(int(c) for c in _CENTRE)


def _diverging_lut() -> np.ndarray:
    index = np.arange(256, dtype=np.float64)[:, None]
    low = _CENTRE + (_BLUE - _CENTRE) * (128 - index) / 128
    high = _CENTRE + (_RED - _CENTRE) * (index - 128) / 127
    return np.where(index < 128, low, high).round().astype(np.uint8)


_DIVERGING = _diverging_lut()


def fit_image(image: Image.Image, size: tuple[int, int], fit: Fit = "stretch", fill: tuple[int, int, int] = (124, 116, 104)) -> Image.Image:
    """Resize ``image`` to ``size`` = (height, width) by the given policy; ``pad`` letterboxes in ``fill`` (RGB 0-255)."""
    height, width = size
    image = image.convert("RGB")
    if fit == "stretch":
        return image.resize((width, height), Image.BICUBIC)
    w, h = image.size
    if fit == "crop":
        scale = max(width / w, height / h)
        resized = image.resize((max(width, round(w * scale)), max(height, round(h * scale))), Image.BICUBIC)
        left, top = (resized.width - width) // 2, (resized.height - height) // 2
        return resized.crop((left, top, left + width, top + height))
    if fit == "pad":
        scale = min(width / w, height / h)
        resized = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        canvas = Image.new("RGB", (width, height), fill)
        canvas.paste(resized, ((width - resized.width) // 2, (height - resized.height) // 2))
        return canvas
    raise ValueError(f"unknown fit {fit!r}")


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """PIL RGB -> float tensor (1, 3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).to(device)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Tensor (1, 3, H, W) or (3, H, W) in [0, 1] -> 8-bit PIL RGB (clamped, rounded)."""
    if tensor.dim() == 4:
        tensor = tensor[0]
    array = (tensor.detach().float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, "RGB")


def quantize(tensor: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid, as saving to PNG and loading back does."""
    return (tensor.clamp(0, 1) * 255.0).round() / 255.0


def normalize_map(values: np.ndarray, mode: Literal["minmax", "abs_max", "none"] = "minmax") -> np.ndarray:
    """Scale a map for display. ``none`` keeps raw values (clipped to [0, 1] when drawn)."""
    values = np.asarray(values, dtype=np.float32)
    if mode == "none":
        return values
    if mode == "abs_max":
        peak = float(np.abs(values).max())
        return values / peak if peak > 0 else np.zeros_like(values)
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def colorize(values: np.ndarray, colormap: Colormap = "jet") -> Image.Image:
    """A 2-D map with values in [0, 1] -> an RGB heatmap (``coolwarm``: 0.5 is the centre colour)."""
    grey = (np.clip(values, 0, 1) * 255).round().astype(np.uint8)
    if COLORMAPS[colormap] is None:
        return Image.fromarray(grey, "L").convert("RGB")
    if COLORMAPS[colormap] == "diverging":
        return Image.fromarray(_DIVERGING[grey], "RGB")
    bgr = cv2.applyColorMap(grey, COLORMAPS[colormap])
    return Image.fromarray(bgr[:, :, ::-1].copy(), "RGB")


def overlay(image: Image.Image, heatmap: Image.Image, alpha: float = 0.5) -> Image.Image:
    """Blend ``heatmap`` over ``image`` (heatmap resized to the image)."""
    heat = heatmap.resize(image.size, Image.BILINEAR)
    return Image.blend(image.convert("RGB"), heat, alpha)


def tile_grid(tiles: np.ndarray, columns: int | None = None, pad: int = 1, background: int = 255) -> Image.Image:
    """Tiles (N, H, W) grey or (N, H, W, 3) RGB uint8 -> one grid picture."""
    tiles = np.asarray(tiles)
    if tiles.dtype != np.uint8:
        raise ValueError("tile_grid takes uint8 tiles")
    count, height, width = tiles.shape[:3]
    rgb = tiles.ndim == 4
    columns = columns or int(np.ceil(np.sqrt(count)))
    rows = int(np.ceil(count / columns))
    shape = (rows * (height + pad) + pad, columns * (width + pad) + pad) + ((3,) if rgb else ())
    grid = np.full(shape, background, dtype=np.uint8)
    for i in range(count):
        r, c = divmod(i, columns)
        y, x = pad + r * (height + pad), pad + c * (width + pad)
        grid[y : y + height, x : x + width] = tiles[i]
    return Image.fromarray(grid, "RGB" if rgb else "L")
