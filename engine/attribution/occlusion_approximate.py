"""Approximate occlusion: a coarse grid of windows first, then drill down, after Krypton's adaptive
drill-down (Nakandala et al., SIGMOD 2019, https://arxiv.org/abs/1807.08958).

The windows on every ``coarse_step``-th row and column of the window grid (and
on its last row and column) are computed exactly; every other window's drops
are interpolated bilinearly over the grid from them. The ``drill_down``
fraction of the interpolated windows with the largest estimated probability
drop is then computed exactly, and ``checks`` more, spread evenly over the
windows still interpolated. The deviation reported is estimated from two
samples of interpolation errors: the checked windows (their estimate against
their exact drops), and the coarse windows themselves, each predicted from
the coarse grid's own every-other row and column (twice the spacing, so
errors larger than the real ones). The mean deviation is the samples' mean.
A handful of samples rarely holds the worst of a hundred interpolated
windows, so the max deviation is the larger of the largest sample and the
largest of as many errors as there are interpolated windows expected from an
exponential law with the samples' mean (that mean times the harmonic number
of their count). A map pixel is the mean drop of the windows covering it, so
its error is at most the largest of theirs.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from engine.progress import Progress

Drops = Callable[[np.ndarray, Progress], torch.Tensor]  # window indices -> their exact drops, (n, scores)


@dataclass(frozen=True)
class Approximation:
    coarse_step: int = 2
    drill_down: float = 0.0
    checks: int = 4


def coarse_positions(count: int, step: int) -> np.ndarray:
    """Every ``step``-th of ``count`` grid positions, and the last."""
    return np.unique(np.r_[np.arange(0, count, step), count - 1])


def planned_windows(rows: int, cols: int, how: Approximation) -> tuple[int, int, int]:
    """How many windows are computed on the coarse grid, drilled into and checked."""
    coarse = len(coarse_positions(rows, how.coarse_step)) * len(coarse_positions(cols, how.coarse_step))
    drilled = round(how.drill_down * (rows * cols - coarse))
    return coarse, drilled, min(how.checks, rows * cols - coarse - drilled)


def _interpolated(grid: torch.Tensor, at_rows: np.ndarray, at_cols: np.ndarray, rows: int, cols: int) -> torch.Tensor:
    """(rows, cols, scores): ``grid`` (known at rows ``at_rows`` x cols ``at_cols``) interpolated bilinearly."""
    def weights(count, known):
        linear = np.stack([np.interp(np.arange(count), known, column) for column in np.eye(len(known))], 1)
        return torch.as_tensor(linear, dtype=grid.dtype, device=grid.device)

    return torch.einsum("ri,cj,ijs->rcs", weights(rows, at_rows), weights(cols, at_cols), grid)


def _cross_validated(grid: torch.Tensor, at_rows: np.ndarray, at_cols: np.ndarray) -> torch.Tensor:
    """|error| of each coarse window predicted from the coarse grid's every-other row and column, (n, scores)."""
    kept_rows, kept_cols = coarse_positions(len(at_rows), 2), coarse_positions(len(at_cols), 2)
    sparse = grid[kept_rows][:, kept_cols]
    predicted = _interpolated(sparse, at_rows[kept_rows], at_cols[kept_cols], at_rows[-1] + 1, at_cols[-1] + 1)
    predicted = predicted[at_rows][:, at_cols]
    held_out = np.ones(grid.shape[:2], dtype=bool)
    held_out[np.ix_(kept_rows, kept_cols)] = False
    return (predicted - grid)[torch.as_tensor(held_out, device=grid.device)].abs()


def expected_largest(errors: torch.Tensor, count: int) -> torch.Tensor:
    """Per column of ``errors`` (samples, scores): the larger of its largest sample and the expected largest of
    ``count`` errors drawn from an exponential law with its mean (that mean times the count-th harmonic number)."""
    harmonic = sum(1.0 / k for k in range(1, count + 1))
    return torch.maximum(errors.amax(0), errors.mean(0) * harmonic)


def approximate_drops(exact_drops: Drops, rows: int, cols: int, how: Approximation, progress: Progress) -> tuple[torch.Tensor, dict]:
    """Every window's drops (row by row over a ``rows`` x ``cols`` grid, most of them estimated), and how many
    windows were computed with the estimated max and mean |estimate - exact| drop (None: nothing to estimate it)."""
    coarse_count, drilled_count, check_count = planned_windows(rows, cols, how)
    total = coarse_count + drilled_count + check_count
    at_rows, at_cols = coarse_positions(rows, how.coarse_step), coarse_positions(cols, how.coarse_step)
    coarse = (at_rows[:, None] * cols + at_cols[None, :]).ravel()
    grid = exact_drops(coarse, lambda done, _: progress(done, total)).view(len(at_rows), len(at_cols), -1)
    drops = _interpolated(grid, at_rows, at_cols, rows, cols).reshape(rows * cols, -1)
    drops[coarse] = grid.reshape(len(coarse), -1)
    rest = np.setdiff1d(np.arange(rows * cols), coarse)
    by_size = rest[np.argsort(-drops[rest, 0].abs().cpu().numpy(), kind="stable")]
    drilled, remaining = by_size[:drilled_count], np.sort(by_size[drilled_count:])
    checked = remaining[np.linspace(0, len(remaining) - 1, check_count).round().astype(int)] if check_count else remaining[:0]
    errors = [_cross_validated(grid, at_rows, at_cols)]
    chosen = np.r_[drilled, checked]
    if len(chosen):
        exact = exact_drops(chosen, lambda done, _: progress(coarse_count + done, total))
        errors.append((drops[checked] - exact[drilled_count:]).abs())
        drops[chosen] = exact
    interpolated = rows * cols - total
    errors = torch.cat(errors) if interpolated else drops[:0]  # nothing left estimated: no deviation
    found = {"windows_computed": total, "windows_interpolated": interpolated, "deviation_samples": len(errors)}
    if not interpolated:
        found["max_deviation"] = found["mean_deviation"] = torch.zeros_like(drops[0])
    else:
        found["max_deviation"] = expected_largest(errors, interpolated) if len(errors) else None
        found["mean_deviation"] = errors.mean(0) if len(errors) else None
    return drops, found
