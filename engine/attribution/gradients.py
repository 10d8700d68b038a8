"""Gradients of a class score with respect to the [0, 1] pixel input."""

from typing import Callable

import torch

from engine.attribution.targets import pick_class

Forward = Callable[[torch.Tensor], torch.Tensor]


def class_gradient(forward: Forward, images: torch.Tensor, index: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """d logit[index] / d images for a batch (each row its own input), the logits, and the class used.

    ``index`` None takes the top-1 class of the first row. ``images`` is
    never modified; the gradient is taken on a private leaf copy.
    """
    x = images.detach().clone().requires_grad_(True)
    logits = forward(x)
    index = pick_class(logits, index)
    (grad,) = torch.autograd.grad(logits[:, index].sum(), x)
    return grad, logits.detach(), index

