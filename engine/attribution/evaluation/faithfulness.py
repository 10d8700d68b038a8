"""Deletion and insertion (Petsiuk et al. 2018, RISE, https://arxiv.org/abs/1806.07421).

Square patches of pixels (``patch`` x ``patch``; the map's mean over each patch is
its score, as in Samek et al. 2017's region perturbation) are taken in the map's
order, most important first (ties broken by a seeded random order). Patches keep a
random reference map from winning by scattering out-of-distribution specks; with
``patch=1`` pixels are taken one by one. Deletion: replace them, a fraction at a time, with black and record
the target's probability; a faithful map makes it fall fast (low area under the
curve). Insertion: start from a heavily blurred picture and put the pixels back; a
faithful map makes the probability rise fast (high area).
"""

import numpy as np
import torch

from engine.attribution.baselines import blurred
from engine.models import ConvLensModel


def pixel_order(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, largest map value first; ties in a seeded random order."""
    tiebreak = np.random.default_rng(seed).random(values.size)
    return np.lexsort((tiebreak, -values.ravel().astype(np.float64)))


def curves(
    model: ConvLensModel, x: torch.Tensor, index: int, values: np.ndarray, steps: int = 16, seed: int = 0,
    patch: int = 8, batch_size: int = 17,
) -> dict[str, list[float]]:
    """Target probability after each of ``steps`` + 1 fractions 0, 1/steps, .., 1 of patches deleted / inserted."""
    height, width = x.shape[-2:]
    scores = torch.nn.functional.avg_pool2d(torch.from_numpy(np.asarray(values, np.float32))[None, None], patch, ceil_mode=True)[0, 0]
    rows, cols = scores.shape
    order = torch.from_numpy(pixel_order(scores.numpy(), seed))
    region_rank = torch.empty(rows * cols, dtype=torch.long)
    region_rank[order] = torch.arange(rows * cols)
    rank = region_rank.view(rows, cols).repeat_interleave(patch, 0).repeat_interleave(patch, 1)[:height, :width]
    rank = rank.to(x.device).view(1, 1, height, width)
    counts = [round(k * rows * cols / steps) for k in range(steps + 1)]
    blur = blurred(x, sigma=max(height, width) / 16)
    out = {}
    with torch.inference_mode():
        for name, start, end in (("deletion", x, torch.zeros_like(x)), ("insertion", blur, x)):
            probs = []
            for lo in range(0, len(counts), batch_size):
                chosen = torch.tensor(counts[lo : lo + batch_size], device=x.device).view(-1, 1, 1, 1)
                changed = rank < chosen  # (B, 1, H, W): the first `count` patches in the map's order
                probs += model(torch.where(changed, end, start)).softmax(-1)[:, index].float().tolist()
            out[name] = probs
    return out


def area(curve: list[float]) -> float:
    """Area under a curve sampled at evenly spaced fractions of [0, 1] (trapezoid rule)."""
    values = np.asarray(curve, dtype=np.float64)
    return float((values.sum() - (values[0] + values[-1]) / 2) / (len(values) - 1))
