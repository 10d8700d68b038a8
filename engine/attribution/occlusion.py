"""Occlusion (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901).

Slide a square window filled with one colour over the picture and record how
much the target class's probability (or logit) drops; each pixel gets the
mean drop over the windows that covered it, as Captum's ``Occlusion`` does.
Windows start every ``stride`` pixels; the last row/column of windows is
clipped at the border so every pixel is covered.

The ``auto`` strategy recomputes only each window's receptive-field cone
(:mod:`engine.attribution.incremental`), same numbers as ``brute_force``,
which it falls back to when the network cannot be traced or no convolution
or pooling of it would run on less than the whole map; the result's
``strategy`` names the one that ran. ``approximate`` computes a coarse grid
of windows and interpolates most others, reporting the estimated deviation
(:mod:`engine.attribution.occlusion_approximate`).
Windows are evaluated ``batch_size`` at a time; a CUDA out-of-memory error
halves the batch and retries. Neither changes the map. Both strategies run
the network with its batch norms folded into the convs
(:mod:`engine.models.folding`).
"""

import math
from typing import Annotated, Callable, Literal

import numpy as np
import torch
from pydantic import Field

from engine.capabilities import CLASSIFIER
from engine.models.folding import folded
from engine.attribution.incremental import IncrementalOcclusion, Unsupported, Window
from engine.attribution.occlusion_approximate import Approximation, approximate_drops, planned_windows
from engine import params as p
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result
from engine.attribution.targets import class_target, pick_class, requested_class
from engine.attribution.timing import Stopwatch
from engine.cost import Cost, forward_peak
from engine.errors import InvalidParams
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.models.profile import ModelProfile
from engine.progress import Progress, no_progress
from engine.registry import method
from engine.result import Result

Channel = Annotated[int, Field(ge=0, le=255)]
SCORES = ("probability", "logit")


class OcclusionParams(AttributionParams):
    window: int = Field(32, ge=1, le=1024, description="side of the square occluding window, in pixels")
    stride: int = Field(16, ge=1, le=1024, description="step between window positions, in pixels; at most window, so every pixel is covered")
    fill: Literal["mean"] | tuple[Channel, Channel, Channel] = Field(
        "mean", description="window colour: the dataset mean of the model's preprocessing, or an RGB 0-255 triple"
    )
    score: Literal["probability", "logit"] = Field(
        "probability", description="which drop becomes the map (both are returned as arrays)", json_schema_extra=p.RARE
    )
    batch_size: int = p.batch_size(32, 1024, "occluded pictures per forward pass")
    strategy: Literal["auto", "brute_force", "approximate"] = Field(
        "auto",
        description="auto: recompute only each window's receptive-field cone (same result, faster); "
        "brute_force: run the whole network on every occluded picture; approximate (after Krypton's drill-down): "
        "compute a coarse grid of windows as auto does, interpolate the others' drops, compute the drill_down "
        "fraction and check_windows of them too, and report the estimated max_deviation and mean_deviation",
    )
    coarse_step: int = Field(2, ge=2, le=16, description="approximate: windows computed on every coarse_step-th row and column of the window grid (and its last)", json_schema_extra=p.RARE)
    drill_down: float = Field(
        0.0, ge=0.0, le=1.0, description="approximate: fraction of the interpolated windows computed after all, largest estimated probability drop first", json_schema_extra=p.RARE
    )
    check_windows: int = Field(
        4, ge=0, le=256, description="approximate: interpolated windows, spread over the picture, computed after all to measure the deviation", json_schema_extra=p.RARE
    )

    def approximation(self) -> Approximation:
        return Approximation(self.coarse_step, self.drill_down, self.check_windows)


def window_grid(height: int, width: int, window: int, stride: int) -> list[Window]:
    """Window boxes (y0, y1, x0, x1), row by row, clipped at the bottom/right border."""
    if window > min(height, width):
        raise InvalidParams(f"window {window} is larger than the {height}x{width} picture")
    if stride > window:
        raise InvalidParams(f"stride {stride} is larger than window {window}: the pixels between windows would have no value")
    rows, cols = grid_shape(height, width, window, stride)
    return [(i * stride, min(i * stride + window, height), j * stride, min(j * stride + window, width))
            for i in range(rows) for j in range(cols)]


def in_batches(run: Callable[[np.ndarray], torch.Tensor], count: int, batch_size: int, progress: Progress) -> torch.Tensor:
    """``run`` over 0..count-1 in batches; on CUDA out-of-memory the batch is halved and retried."""
    outputs, done, size = [], 0, batch_size
    while done < count:
        chosen = np.arange(done, min(count, done + size))
        try:
            outputs.append(run(chosen))
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            size = max(1, size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            continue
        done += len(chosen)
        progress(done, count)
    return torch.cat(outputs)


def occlusion_drops(
    model: ConvLensModel,
    x: torch.Tensor,
    index: int | None,
    window: int,
    stride: int,
    fill: tuple[float, float, float],
    batch_size: int = 32,
    strategy: str = "auto",
    progress: Progress = no_progress,
    approximation: Approximation = Approximation(),
) -> dict:
    """Per-pixel mean drop of the class probability and logit, with the clean logits and what ran
    (for ``approximate``, the windows computed and the estimated deviation of the others' drops)."""
    net = folded(model)
    height, width = x.shape[-2:]
    windows = window_grid(height, width, window, stride)
    colour = torch.tensor(fill, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    with torch.inference_mode():
        evaluate, used, clean = _evaluator(net, x, windows, colour, "brute_force" if strategy == "brute_force" else "auto")
        index = pick_class(clean, index)
        clean = clean.float()

        def exact_drops(chosen: np.ndarray, progress: Progress) -> torch.Tensor:
            logits = in_batches(lambda part: evaluate(chosen[part]).float(), len(chosen), batch_size, progress)
            return torch.stack(
                [clean.softmax(-1)[0, index] - logits.softmax(-1)[:, index], clean[0, index] - logits[:, index]], 1
            )

        found = {"strategy": used}
        if strategy == "approximate":
            drops, counts = approximate_drops(exact_drops, *grid_shape(height, width, window, stride), approximation, progress)
            found = {"strategy": "approximate", "windows_by": used, **counts}
            for name in ("max_deviation", "mean_deviation"):
                found[name] = None if counts[name] is None else dict(zip(SCORES, counts[name].tolist()))
        else:
            drops = exact_drops(np.arange(len(windows)), progress)
        maps = dict(zip(SCORES, window_means(drops, windows, height, width)))
    return {"maps": maps, "logits": clean, "index": index, "windows": len(windows), **found}


def _evaluator(net, x: torch.Tensor, windows: list[Window], colour: torch.Tensor, strategy: str):
    """(window indices -> the network's outputs, the strategy that computes them, the clean output)."""
    if strategy == "auto":
        try:
            fast = IncrementalOcclusion(net, x, windows)
            return (lambda chosen: fast.outputs(chosen, colour)), "receptive_field", fast.clean_output
        except Unsupported:
            pass

    def evaluate(chosen):
        batch = x.repeat(len(chosen), 1, 1, 1)
        for i, k in enumerate(chosen):
            y0, y1, x0, x1 = windows[k]
            batch[i, :, y0:y1, x0:x1] = colour[0]
        return net(batch)

    return evaluate, "brute_force", net(x)


def window_means(drops: torch.Tensor, windows: list[Window], height: int, width: int) -> list[torch.Tensor]:
    """For each column of ``drops`` (one row per window), every pixel's mean over the windows covering it."""
    count = torch.zeros(height, width, dtype=torch.float64)
    for y0, y1, x0, x1 in windows:
        count[y0:y1, x0:x1] += 1
    maps = []
    for drop in drops.double().cpu().T:
        total = torch.zeros(height, width, dtype=torch.float64)
        for (y0, y1, x0, x1), d in zip(windows, drop.tolist()):
            total[y0:y1, x0:x1] += d
        maps.append((total / count).float())
    return maps


def grid_shape(height: int, width: int, window: int, stride: int) -> tuple[int, int]:
    """Rows and columns of the windows :func:`window_grid` makes (without building them)."""
    return math.ceil(max(height - window, 0) / stride) + 1, math.ceil(max(width - window, 0) / stride) + 1


def window_count(height: int, width: int, window: int, stride: int) -> int:
    """How many windows :func:`window_grid` makes (without building them)."""
    rows, cols = grid_shape(height, width, window, stride)
    return rows * cols


def occlusion_cost(model: ModelProfile, params: OcclusionParams, images: int) -> Cost:
    """One forward pass per window (plus the clean one), a batch of occluded pictures alive at once."""
    height, width = model.input_size
    windows = window_count(height, width, params.window, params.stride)
    if params.strategy == "approximate":
        windows = sum(planned_windows(*grid_shape(height, width, params.window, params.stride), params.approximation()))
    return Cost(
        windows + 1, 3 * height * width, forward_peak(model) * min(params.batch_size, windows),
        f"raise stride (now {params.stride}) or window (now {params.window}): {windows:,} windows",
    )


@method(
    "occlusion",
    summary="Drop of the class probability as a grey window slides over the picture (Zeiler & Fergus 2014)",
    evaluable=True, compare=True,
    category="attribute",
    params=OcclusionParams,
    requires=(CLASSIFIER,),
    cost=occlusion_cost,
)
def occlusion(model: ConvLensModel, inputs, params: OcclusionParams, progress) -> Result:
    index = requested_class(model, params.target_class)
    image = model.fit_input(inputs["image"], params.fit)
    fill = tuple(model.mean_colour().flatten().tolist()) if params.fill == "mean" else tuple(c / 255.0 for c in params.fill)
    clock = Stopwatch()
    found = occlusion_drops(
        model, to_tensor(image, model.device), index, params.window, params.stride, fill,
        params.batch_size, params.strategy, progress, params.approximation(),
    )
    clock.lap("attribution_ms")
    maps = {name: m.numpy() for name, m in found["maps"].items()}
    return attribution_result(
        model, "occlusion", image, maps[params.score], params,
        class_target(model, found["logits"], found["index"]), "all", clock.laps,
        arrays={"probability_drop": maps["probability"], "logit_drop": maps["logit"]},
        data={
            "score": params.score,
            **{k: v for k, v in found.items() if k not in ("maps", "logits", "index")},
            "fill": [round(c, 6) for c in fill],
        },
        main="overlay",
    )
