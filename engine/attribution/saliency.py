"""Saliency: |d class score / d pixel|, max over RGB (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034).

Taken through the network as it is (no batch-norm folding): one forward and
one backward pass, the computation Captum's ``Saliency`` does, on a
channels-last copy of the weights (same numbers up to float rounding).
"""

import torch

from engine.capabilities import CLASSIFIER
from engine.attribution.channels_last import channels_last_forward
from engine.attribution.gradients import row_class_gradients
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result, max_abs_over_channels
from engine.attribution.targets import class_target, requested_class
from engine.attribution.timing import Stopwatch
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import Batching, method
from engine.result import Result


class SaliencyParams(AttributionParams):
    pass


def saliency_cost(model: ModelProfile, params: SaliencyParams, images: int) -> Cost:
    """One forward and one backward pass."""
    return gradient_cost(model, model.input_size, 2, 1, "")


def saliency_batch(model: ConvLensModel, calls: list[tuple[dict, SaliencyParams]]) -> list[Result]:
    """Saliency of several pictures in one forward and backward pass, each with its own class."""
    indices = [requested_class(model, params.target_class) for _inputs, params in calls]
    images = [model.fit_input(inputs["image"], params.fit) for inputs, params in calls]
    clock = Stopwatch()
    x = torch.cat([to_tensor(image, model.device) for image in images])
    grad, logits, indices = row_class_gradients(channels_last_forward(model), x, indices)
    clock.lap("attribution_ms")
    return [
        attribution_result(model, "saliency", image, max_abs_over_channels(grad[row : row + 1]), params,
                           class_target(model, logits[row : row + 1], indices[row]), "absolute", clock.laps)
        for row, (image, (_inputs, params)) in enumerate(zip(images, calls))
    ]


@method(
    "saliency",
    summary="Vanilla gradient of the class score w.r.t. the pixels (Simonyan et al. 2014)",
    cost=saliency_cost,
    evaluable=True, compare=True,
    category="attribute",
    params=SaliencyParams,
    requires=(CLASSIFIER,),
    batching=Batching(key=lambda params: (), run=saliency_batch),
)
def saliency(model: ConvLensModel, inputs, params: SaliencyParams, progress) -> Result:
    return saliency_batch(model, [(inputs, params)])[0]
