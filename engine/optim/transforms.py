"""Random transforms applied to the image before the network sees it.

Each is ``(config) -> (tensor) -> tensor`` and differentiable, so the optimiser
sees gradients averaged over small shifts, scalings and rotations: the image
is pushed towards features that survive them instead of high-frequency
patterns (Mordvintsev et al. 2015; Yosinski et al. 2015). Pass a seeded
``torch.Generator`` for reproducible runs.
"""

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor], torch.Tensor]


def _pick(count: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(count, (1,), generator=generator))


def jitter(pixels: int, generator: torch.Generator | None = None) -> Transform:
    """Roll the image by a random offset of up to ``pixels`` in each direction (wrapping round)."""

    def transform(image: torch.Tensor) -> torch.Tensor:
        if pixels <= 0:
            return image
        dy = _pick(2 * pixels + 1, generator) - pixels
        dx = _pick(2 * pixels + 1, generator) - pixels
        return torch.roll(image, shifts=(dy, dx), dims=(-2, -1))

    return transform


def pad(pixels: int, mode: str = "reflect", value: float = 0.5) -> Transform:
    """Pad every side by ``pixels`` (``reflect``, ``replicate`` or ``constant`` with ``value``)."""

    def transform(image: torch.Tensor) -> torch.Tensor:
        if mode == "constant":
            return F.pad(image, [pixels] * 4, mode="constant", value=value)
        return F.pad(image, [pixels] * 4, mode=mode)

    return transform


def random_scale(scales: Sequence[float], generator: torch.Generator | None = None) -> Transform:
    """Resize by a factor drawn from ``scales`` (bilinear)."""

    def transform(image: torch.Tensor) -> torch.Tensor:
        factor = scales[_pick(len(scales), generator)]
        if factor == 1:
            return image
        height, width = image.shape[-2:]
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        return F.interpolate(image, size=size, mode="bilinear", align_corners=False)

    return transform


def random_rotate(degrees: Sequence[float], generator: torch.Generator | None = None) -> Transform:
    """Rotate about the centre by an angle drawn from ``degrees`` (positive: counter-clockwise; bilinear, border repeated)."""

    def transform(image: torch.Tensor) -> torch.Tensor:
        angle = math.radians(degrees[_pick(len(degrees), generator)])
        if angle == 0:
            return image
        cos, sin = math.cos(angle), math.sin(angle)
        theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=image.dtype, device=image.device)
        grid = F.affine_grid(theta.expand(image.shape[0], 2, 3), list(image.shape), align_corners=False)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return transform
