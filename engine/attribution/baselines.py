"""Reference pictures that mean "no information": the dataset mean colour, black, a blur."""

import math

import torch
from torchvision.transforms.functional import gaussian_blur

from engine.models import ConvLensModel


def blurred(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a (N, 3, H, W) picture; the kernel spans about +-3 sigma, within the picture."""
    size = min(2 * math.ceil(3 * sigma) + 1, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)
    return gaussian_blur(x, [size, size], [sigma, sigma])


def baseline_picture(model: ConvLensModel, x: torch.Tensor, kind: str, sigma: float = 10.0) -> torch.Tensor:
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "mean":
        return model.mean_colour().to(x).expand_as(x).clone()
    if kind == "blur":
        return blurred(x, sigma)
    raise ValueError(f"unknown baseline {kind!r}")
