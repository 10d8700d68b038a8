"""SmoothGrad (Smilkov et al. 2017, https://arxiv.org/abs/1706.03825).

The mean vanilla gradient over noisy copies of the picture (Gaussian noise
whose std is ``noise_level`` times the picture's value range), or the mean
squared gradient (``squared``); map = max over RGB of its magnitude. The
noise comes from a generator seeded with ``seed`` and is drawn in one go,
so ``batch_size`` changes the map only through the rounding of the batch's
shape (up to 1e-3 of its peak on some CPUs: gradients at noisy copies are sensitive).
"""

import torch
from pydantic import Field

from engine.capabilities import CLASSIFIER
from engine.models.folding import folded
from engine.attribution.gradients import pooled_gradients
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
from engine.registry import Batching, method
from engine.result import Result


class SmoothGradParams(AttributionParams, Seeded):
    noise_level: float = Field(0.15, ge=0.0, le=1.0, description="noise std as a fraction of the picture's value range")
    samples: int = Field(25, ge=1, le=100, description="noisy copies averaged")
    squared: bool = Field(False, description="average squared gradients (SmoothGrad-Squared)")
    batch_size: int = p.batch_size(8, 100, "noisy copies per backward pass")


def noisy_copies(x: torch.Tensor, noise_level: float, samples: int, seed: int) -> torch.Tensor:
    """``samples`` copies of the picture ``x`` (1, 3, H, W) with Gaussian noise of std ``noise_level`` times its value range."""
    std = noise_level * float(x.max() - x.min())
    generator = torch.Generator(device=x.device).manual_seed(seed)
    return x + torch.normal(0.0, torch.full((samples, *x.shape[1:]), std, device=x.device), generator=generator)


def smoothgrad_batch(model: ConvLensModel, calls: list[tuple[dict, SmoothGradParams]], progress: Progress = no_progress) -> list[Result]:
    """SmoothGrad of several pictures (same noise level, samples and batch size; each its seed), their noisy
    copies sharing passes, each with its class: the mean (squared) gradient over the copies."""
    first = calls[0][1]
    images = [model.fit_input(inputs["image"], params.fit) for inputs, params in calls]
    x = torch.cat([to_tensor(image, model.device) for image in images])
    clock = Stopwatch()
    with torch.inference_mode():
        logits = model(x)
    indices = [pick_class(logits[p : p + 1], requested_class(model, params.target_class)) for p, (_inputs, params) in enumerate(calls)]
    copies = [noisy_copies(x[p : p + 1], params.noise_level, params.samples, params.seed) for p, (_inputs, params) in enumerate(calls)]
    totals = pooled_gradients(folded(model), copies, indices, first.batch_size, squared=first.squared, progress=progress)
    clock.lap("attribution_ms")
    return [
        attribution_result(
            model, "smoothgrad", image, max_abs_over_channels(total / params.samples), params,
            class_target(model, logits[p : p + 1], indices[p]), "absolute", clock.laps,
            data={"squared": params.squared, "samples": params.samples, "noise_level": params.noise_level},
        )
        for p, (total, image, (_inputs, params)) in enumerate(zip(totals, images, calls))
    ]


def noise_key(params: SmoothGradParams) -> tuple:
    """Calls share passes when their copies are alike in number and kind and their batches the same size."""
    return (params.noise_level, params.samples, params.squared, params.batch_size)


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
    batching=Batching(key=noise_key, run=smoothgrad_batch),
)
def smoothgrad(model: ConvLensModel, inputs, params: SmoothGradParams, progress) -> Result:
    return smoothgrad_batch(model, [(inputs, params)], progress)[0]
