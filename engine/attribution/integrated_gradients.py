"""Integrated gradients (Sundararajan et al. 2017, https://arxiv.org/abs/1703.01365).

Attribution = (picture - baseline) x the class score's gradient integrated
along the straight path from the baseline to the picture, by Gauss-Legendre
or Riemann quadrature with the same nodes and weights as Captum. The map sums
the attribution over RGB (so it keeps completeness: the map sums to
F(picture) - F(baseline) up to ``convergence_delta``, reported in data).
"""

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from engine.capabilities import CLASSIFIER
from engine.attribution.baselines import baseline_picture
from engine.models.folding import folded
from engine.attribution.gradients import pooled_gradients
from engine import params as p
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result
from engine.attribution.targets import class_target, pick_class, requested_class
from engine.attribution.timing import Stopwatch
from engine.cost import Cost, saved_for_backward
from engine.imaging import to_image, to_tensor
from engine.models import ConvLensModel
from engine.models.profile import ModelProfile
from engine.progress import Progress, no_progress
from engine.registry import Batching, method
from engine.result import Result

Quadrature = Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"]


class IntegratedGradientsParams(AttributionParams):
    baseline: Literal["black", "mean", "blur"] = Field(
        "black", description="path start: black, the dataset mean color, or a Gaussian blur of the picture"
    )
    blur_sigma: float = Field(10.0, gt=0.0, le=100.0, description="blur std in pixels for the blur baseline", json_schema_extra=p.RARE)
    steps: int = p.steps(32, 2, 512, "points on the path")
    quadrature: Quadrature = Field("gausslegendre", description="quadrature rule (as in Captum)", json_schema_extra=p.RARE)
    batch_size: int = p.batch_size(16, 512, "path points per backward pass")
    sign: Literal["all", "positive", "absolute"] = Field(
        "all", description="map = RGB-summed attribution: as is, its positive part, or its magnitude"
    )


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas in [0, 1], weights) of the path integral; Captum's conventions."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    weights = np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        weights[[0, -1]] /= 2
        return torch.linspace(0, 1, steps).double().numpy(), weights
    alphas = {
        "riemann_left": torch.linspace(0, 1 - 1 / steps, steps),
        "riemann_right": torch.linspace(1 / steps, 1, steps),
        "riemann_middle": torch.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps),
    }[method]
    return alphas.double().numpy(), weights


def integrated_gradients(
    model: ConvLensModel, x: torch.Tensor, baseline: torch.Tensor, indices: list[int], steps: int,
    method: str = "gausslegendre", batch_size: int = 16, progress: Progress = no_progress,
) -> list[tuple[torch.Tensor, float]]:
    """(attributions (1, 3, H, W), convergence delta) of each picture (row) of ``x`` for its class, its path
    from its row of ``baseline``; the path points of all pictures run ``batch_size`` at a time."""
    net = folded(model)
    alphas, weights = quadrature(method, steps)
    alphas_t = torch.tensor(alphas, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    weights_t = torch.tensor(weights, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
    paths = [baseline[p : p + 1] + alphas_t * (x[p : p + 1] - baseline[p : p + 1]) for p in range(len(x))]
    totals = pooled_gradients(net, paths, indices, batch_size, [weights_t] * len(x), progress=progress)
    with torch.inference_mode():
        ends = net(torch.cat([x, baseline]))
    answers = []
    for p, total in enumerate(totals):
        attributions = (x[p : p + 1] - baseline[p : p + 1]) * total
        answers.append((attributions, float(attributions.sum() - (ends[p, indices[p]] - ends[len(x) + p, indices[p]]))))
    return answers


def integrated_gradients_cost(model: ModelProfile, params: IntegratedGradientsParams, images: int) -> Cost:
    """A forward and a backward pass per path point (plus the two ends); a batch's activations alive at once."""
    height, width = model.input_size
    memory = saved_for_backward(model) * min(params.batch_size, params.steps)
    return Cost(2 * params.steps + 3, 4 * height * width, memory, "lower steps or internal_batch_size")


def integrated_gradients_batch(model: ConvLensModel, calls: list[tuple[dict, IntegratedGradientsParams]], progress: Progress = no_progress) -> list[Result]:
    """Integrated gradients of several pictures (same path params), their path points sharing passes, each with its class."""
    first = calls[0][1]
    images = [model.fit_input(inputs["image"], params.fit) for inputs, params in calls]
    x = torch.cat([to_tensor(image, model.device) for image in images])
    baseline = torch.cat([baseline_picture(model, x[p : p + 1], first.baseline, first.blur_sigma) for p in range(len(x))])
    clock = Stopwatch()
    with torch.inference_mode():
        logits = model(x)
    indices = [pick_class(logits[p : p + 1], requested_class(model, params.target_class)) for p, (_inputs, params) in enumerate(calls)]
    answers = integrated_gradients(model, x, baseline, indices, first.steps, first.quadrature, first.batch_size, progress)
    clock.lap("attribution_ms")
    results = []
    for p, ((attributions, delta), image, (_inputs, params)) in enumerate(zip(answers, images, calls)):
        summed = attributions[0].sum(0)
        values = {"all": summed, "positive": summed.clamp(min=0), "absolute": summed.abs()}[params.sign]
        results.append(attribution_result(
            model, "integrated_gradients", image, values.cpu().numpy(), params,
            class_target(model, logits[p : p + 1], indices[p]), params.sign, clock.laps,
            images={"baseline": to_image(baseline[p : p + 1])},
            arrays={"attributions": attributions[0].cpu().numpy()},
            data={"convergence_delta": delta, "baseline": params.baseline, "steps": params.steps, "quadrature": params.quadrature},
        ))
    return results


def path_key(params: IntegratedGradientsParams) -> tuple:
    """Calls share passes when their paths are alike (points, rule, baseline) and their batches the same size."""
    return (params.baseline, params.blur_sigma, params.steps, params.quadrature, params.batch_size)


@method(
    "integrated_gradients",
    summary="Gradients integrated along the path from a baseline picture (Sundararajan et al. 2017)",
    evaluable=True, compare=True,
    category="attribute",
    params=IntegratedGradientsParams,
    requires=(CLASSIFIER,),
    cost=integrated_gradients_cost,
    batching=Batching(key=path_key, run=integrated_gradients_batch),
)
def run(model: ConvLensModel, inputs, params: IntegratedGradientsParams, progress) -> Result:
    return integrated_gradients_batch(model, [(inputs, params)], progress)[0]
