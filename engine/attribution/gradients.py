"""Gradients of a class score with respect to the [0, 1] pixel input."""

from collections.abc import Sequence
from typing import Callable

import torch

from engine.attribution.targets import pick_class, row_scores

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



def row_class_gradients(forward: Forward, images: torch.Tensor, indices: Sequence[int | None]) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """d logit[i, index_i] / d images[i] for every row i at once (index None: that row's top-1 class),
    the logits, and the classes used."""
    x = images.detach().clone().requires_grad_(True)
    logits = forward(x)
    score, chosen = row_scores(logits, list(indices))
    (grad,) = torch.autograd.grad(score, x)
    return grad, logits.detach(), chosen
