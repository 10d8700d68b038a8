"""Gradients of a class score with respect to the [0, 1] pixel input."""

from collections.abc import Sequence
from typing import Callable

import numpy as np
import torch

from engine.attribution.targets import pick_class, row_scores
from engine.progress import Progress, no_progress

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


def pooled_gradients(
    forward: Forward, rows: list[torch.Tensor], indices: list[int], batch_size: int,
    weights: list[torch.Tensor] | None = None, squared: bool = False, progress: Progress = no_progress,
) -> list[torch.Tensor]:
    """For each picture p: the sum over its rows (path points, noisy copies) of the (squared) gradient of
    class ``indices[p]``, each row times its weight; shape (1, 3, H, W) per picture. Rows of all pictures
    run ``batch_size`` at a time, so the pictures of several calls share passes."""
    owners = [p for p, picture_rows in enumerate(rows) for _ in range(len(picture_rows))]
    ends = np.cumsum([len(picture_rows) for picture_rows in rows])  # picture p's rows: flat[ends[p] - len(rows[p]) : ends[p]]
    flat = torch.cat(rows)
    scale = torch.cat(weights) if weights is not None else torch.ones(len(flat), 1, 1, 1, dtype=flat.dtype, device=flat.device)
    totals = [torch.zeros_like(picture_rows[:1]) for picture_rows in rows]
    for start in range(0, len(flat), batch_size):
        stop = min(len(flat), start + batch_size)
        grad, _, _ = row_class_gradients(forward, flat[start:stop], [indices[p] for p in owners[start:stop]])
        grad = (grad * grad if squared else grad) * scale[start:stop]
        for p in sorted(set(owners[start:stop])):  # a slice of rows: a boolean mask would wait for the device
            first, last = max(ends[p] - len(rows[p]), start), min(ends[p], stop)
            totals[p] += grad[first - start : last - start].sum(0, keepdim=True)
        progress(stop, len(flat))
    return totals
