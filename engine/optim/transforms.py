"""Random transforms applied to the image before the network sees it.

Each is ``(config) -> (tensor) -> tensor`` and differentiable, so the optimiser
sees gradients averaged over small shifts, scalings and rotations: the image
is pushed towards features that survive them instead of high-frequency
patterns (Mordvintsev et al. 2015; Yosinski et al. 2015). Pass a seeded
``torch.Generator`` for reproducible runs.
"""

import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class RobustnessSet:
    """Lucid's transformation-robustness recipe: constant grey pad, jitter, scale by 1 +- ``scale`` (11 steps),
    rotate by -``degrees``..``degrees`` (0 five times as likely), a finer jitter."""

    pad: int
    jitter: int
    scale: float
    degrees: int
    fine_jitter: int


ROBUSTNESS_SETS = {
    "standard": RobustnessSet(pad=12, jitter=8, scale=0.1, degrees=10, fine_jitter=4),  # Lucid's (Olah et al. 2017)
    # twice the strength: class pictures made under it are recognised far more often by a network that took
    # no part in the optimisation (bench/class_vis_recipes.py)
    "strong": RobustnessSet(pad=16, jitter=16, scale=0.2, degrees=15, fine_jitter=8),
}


def robustness_transforms(name: str, generator: torch.Generator | None = None) -> list[Transform]:
    """The transforms of the named :data:`ROBUSTNESS_SETS` entry, in Lucid's order."""
    chosen = ROBUSTNESS_SETS[name]
    return [
        pad(chosen.pad, "constant", 0.5),
        jitter(chosen.jitter, generator),
        random_scale([1 + chosen.scale * (i - 5) / 5 for i in range(11)], generator),
        random_rotate(list(range(-chosen.degrees, chosen.degrees + 1)) + 5 * [0], generator),
        jitter(chosen.fine_jitter, generator),
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
