"""Reference pictures that mean "no information": the dataset mean colour, black, a blur."""

import math

import torch
from torchvision.transforms.functional import gaussian_blur

from engine.models import ConvLensModel


def mean_colour(model: ConvLensModel) -> tuple[float, float, float]:
    """The model's preprocessing mean as an RGB colour in [0, 1]."""
    pre = model.spec.preprocessing
    mean = [m / pre.scale for m in pre.mean]
    return tuple(mean[::-1] if pre.channel_order == "BGR" else mean)


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (N, 3, H, W) picture; the kernel spans about +-3 sigma, within the picture."""
    size = min(2 * math.ceil(3 * sigma) + 1, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)
    return gaussian_blur(x, [size, size], [sigma, sigma])


def baseline_picture(model: ConvLensModel, x: torch.Tensor, kind: str, sigma: float = 10.0) -> torch.Tensor:
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "mean":
        return torch.tensor(mean_colour(model), dtype=x.dtype, device=x.device).view(1, 3, 1, 1).expand_as(x).clone()
    if kind == "blur":
        return blurred(x, sigma)
    raise ValueError(f"unknown baseline {kind!r}")
