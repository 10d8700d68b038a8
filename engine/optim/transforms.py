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


def standard_transforms(generator: torch.Generator | None = None) -> list[Transform]:
    """Lucid's standard transformation-robustness set: constant pad 12 (grey), jitter 8, scale by
    0.9..1.1, rotate by -10..10 degrees (0 five times as likely), jitter 4 (Olah et al. 2017)."""
    return [
        pad(12, "constant", 0.5),
        jitter(8, generator),
        random_scale([1 + (i - 5) / 50 for i in range(11)], generator),
        random_rotate(list(range(-10, 11)) + 5 * [0], generator),
        jitter(4, generator),
    ]


def strong_transforms(generator: torch.Generator | None = None) -> list[Transform]:
    """Lucid's set at twice the strength: constant pad 16 (grey), jitter 16, scale by 0.8..1.2, rotate by
    -15..15 degrees (0 five times as likely), jitter 8. Class pictures made under it are recognised far
    more often by a network that took no part in the optimisation (bench/class_vis_recipes.py)."""
    return [
        pad(16, "constant", 0.5),
        jitter(16, generator),
        random_scale([1 + (i - 5) / 25 for i in range(11)], generator),
        random_rotate(list(range(-15, 16)) + 5 * [0], generator),
        jitter(8, generator),
    ]


def centre_zoom(smallest: float = 0.6, generator: torch.Generator | None = None) -> Transform:
    """Crop a random centred square of ``smallest``..1 of the side and resize it back: the target must be
    recognisable in the middle of the picture (a centre bias, after Nguyen et al. 2016's multifaceted
    visualisation, https://arxiv.org/abs/1602.03616)."""
    fractions = [smallest + (1 - smallest) * i / 8 for i in range(9)]

    def transform(image: torch.Tensor) -> torch.Tensor:
        fraction = fractions[_pick(len(fractions), generator)]
        height, width = image.shape[-2:]
        h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
        top, left = (height - h) // 2, (width - w) // 2
        crop = image[..., top : top + h, left : left + w]
        return crop if (h, w) == (height, width) else F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)

    return transform
