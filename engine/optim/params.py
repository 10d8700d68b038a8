"""Image parameterisations: ``(config) -> ImageParam(params, image_fn, constrain)``.

The optimiser changes ``params``; ``image_fn()`` turns them into the RGB image
in [0, 1] the network sees; ``constrain()`` (run after every step, without
gradients) keeps the params valid. Keeping pixels in range by projection
rather than by a clamp inside ``image_fn`` matters: a clamp has zero gradient
outside [0, 1], so an image started at black could never brighten.
"""

from typing import Literal

import torch

from engine.imaging import quantize
from engine.models import ConvLensModel
from engine.optim.loop import ImageParam

Start = Literal["zeros", "mean", "noise"]


def start_image(
    kind: Start,
    size: tuple[int, int],
    model: ConvLensModel,
    generator: torch.Generator | None = None,
    noise_sd: float = 0.1,
) -> torch.Tensor:
    """A starting image (1, 3, H, W): black (``zeros``), the mean colour, or mean colour plus Gaussian noise."""
    height, width = size
    if kind == "zeros":
        return torch.zeros(1, 3, height, width, device=model.device)
    image = model.mean_colour().expand(1, 3, height, width).clone()
    if kind == "noise":
        noise = torch.randn(1, 3, height, width, generator=generator).to(model.device)
        image = (image + noise_sd * noise).clamp(0, 1)
    return image


def pixels(init: torch.Tensor, valid: Literal["clip", "sigmoid"] = "clip") -> ImageParam:
    """Optimise the pixels themselves, starting from ``init`` (not modified).

    ``clip`` projects them back into [0, 1] after every step (the gradient is
    never cut); ``sigmoid`` optimises unbounded logits squashed by a sigmoid.
    """
    if valid == "clip":
        values = init.detach().clone().requires_grad_(True)
        return ImageParam([values], lambda: values, lambda: values.clamp_(0, 1))
    if valid == "sigmoid":
        logits = torch.logit(init.detach().clamp(1e-3, 1 - 1e-3)).requires_grad_(True)
        return ImageParam([logits], logits.sigmoid)
    raise ValueError(f"unknown pixel range policy {valid!r}")


def quantized(image: torch.Tensor) -> torch.Tensor:
    """``image`` on the 8-bit grid in the forward pass, with the identity's gradient (straight-through)."""
    return image + (quantize(image) - image).detach()


def bounded_perturbation(
    originals: torch.Tensor,
    eps: float,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> ImageParam:
    """``originals`` (N, 3, H, W) plus one shared perturbation with L-infinity norm at most ``eps``.

    The network sees the perturbed images clipped to [0, 1] and rounded to the
    8-bit grid, so whatever it answers is what it answers for the PNG the
    client gets back. With originals on the 8-bit grid and ``eps`` a whole
    number of 1/255 steps, rounding never takes the perturbation past ``eps``.
    """
    shape = (1,) + tuple(originals.shape[1:])
    delta = torch.zeros(shape, device=originals.device)
    if random_start:
        delta = (torch.rand(shape, generator=generator).to(originals.device) * 2 - 1) * eps
    delta.requires_grad_(True)
    return ImageParam(
        [delta],
        lambda: quantized((originals + delta).clamp(0, 1)),
        lambda: delta.clamp_(-eps, eps),
    )
