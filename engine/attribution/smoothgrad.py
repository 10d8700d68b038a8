"""SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825).

The mean vanilla gradient over noisy copies of the picture (Gaussian noise
whose std is ``noise_level`` times the picture's value range), or the mean
squared gradient (``squared``); map = max over RGB of its magnitude. The
noise comes from a generator seeded with ``seed`` and is drawn in one go,
so ``batch_size`` never changes the map.
"""

import torch
from pydantic import Field

from engine.capabilities import CLASSIFIER
from engine.models.folding import folded
from engine.attribution.gradients import class_gradient
from engine import params as p
from engine.attribution.params import AttributionParams
from engine.params import Seeded
from engine.attribution.render import attribution_result, max_abs_over_channels
from engine.attribution.targets import class_target, pick_class, requested_class
from engine.attribution.timing import Stopwatch
from engine.cost import FLOAT, Cost, saved_for_backward
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.models.profile import ModelProfile
from engine.progress import Progress, no_progress
from engine.registry import method
from engine.result import Result


class SmoothGradParams(AttributionParams, Seeded):
    noise_level: float = Field(0.15, ge=0.0, le=1.0, description="noise std as a fraction of the picture's value range")
    samples: int = Field(25, ge=1, le=100, description="noisy copies averaged")
    squared: bool = Field(False, description="average squared gradients (SmoothGrad-Squared)")
    batch_size: int = p.batch_size(8, 100, "noisy copies per backward pass")


def smoothgrad_gradient(
    model: ConvLensModel, x: torch.Tensor, index: int, noise_level: float, samples: int,
    squared: bool = False, batch_size: int = 8, seed: int = 0, progress: Progress = no_progress,
) -> torch.Tensor:
    """Mean gradient (or squared gradient) over noisy copies, shape (1, 3, H, W)."""
    std = noise_level * float(x.max() - x.min())
    generator = torch.Generator(device=x.device).manual_seed(seed)
    noise = torch.normal(0.0, torch.full((samples, *x.shape[1:]), std, device=x.device), generator=generator)
    total = torch.zeros_like(x)
    for start in range(0, samples, batch_size):
        grad, _, _ = class_gradient(folded(model), x + noise[start : start + batch_size], index)
        total += (grad * grad if squared else grad).sum(0, keepdim=True)
        progress(min(samples, start + batch_size), samples)
    return total / samples


def smoothgrad_cost(model: ModelProfile, params: SmoothGradParams, images: int) -> Cost:
    """A forward and a backward pass per sample; a batch's activations and all the noise alive at once."""
    height, width = model.input_size
    noise = params.samples * 3 * height * width * FLOAT
    memory = saved_for_backward(model) * min(params.batch_size, params.samples) + noise
    return Cost(2 * params.samples + 1, 3 * height * width, memory, "lower samples or batch_size")


@method(
    "smoothgrad",
    summary="Vanilla gradients averaged over noisy copies of the picture (Smilkov et al. 2017)",
    evaluable=True, compare=True,
    category="attribute",
    params=SmoothGradParams,
    requires=(CLASSIFIER,),
    cost=smoothgrad_cost,
)
def smoothgrad(model: ConvLensModel, inputs, params: SmoothGradParams, progress) -> Result:
    index = requested_class(model, params.target_class)
    image = model.fit_input(inputs["image"], params.fit)
    x = to_tensor(image, model.device)
    clock = Stopwatch()
    with torch.inference_mode():
        logits = model(x)
    index = pick_class(logits, index)
    grad = smoothgrad_gradient(model, x, index, params.noise_level, params.samples, params.squared, params.batch_size, params.seed, progress)
    clock.lap("attribution_ms")
    return attribution_result(
        model, "smoothgrad", image, max_abs_over_channels(grad), params,
        class_target(model, logits, index), "absolute", clock.laps,
        data={"squared": params.squared, "samples": params.samples, "noise_level": params.noise_level},
    )
