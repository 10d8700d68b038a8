"""Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391).

Weight each channel of a conv layer's output by the spatial mean of the class
score's gradient there, sum, keep the positive part, and upsample (bilinear)
to the input size. ``arrays["cam"]`` keeps the map at the layer's resolution.
"""

import torch
import torch.nn.functional as F
from pydantic import Field

from engine.capabilities import CLASSIFIER, LAYERS
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result
from engine.attribution.targets import class_target, pick_class, requested_class
from engine.attribution.timing import Stopwatch
from engine.errors import InvalidParams
from engine.hooks import capture
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import method
from engine.result import Result


class GradCamParams(AttributionParams):
    layer: str | None = Field(None, description="conv layer to explain; default: the model's default layer")


def gradcam_map(model: ConvLensModel, x: torch.Tensor, layer: str, index: int | None):
    """(upsampled H x W map, layer-resolution cam, logits, class)."""
    module = model.layer(layer)
    xg = x.detach().clone().requires_grad_(True)
    with capture({layer: module}) as features:
        logits = model(xg)
    activation = features[layer]
    if activation.dim() != 4:
        raise InvalidParams(f"Grad-CAM needs a layer with a spatial feature map; {layer!r} outputs {tuple(activation.shape)}")
    index = pick_class(logits, index)
    (grad,) = torch.autograd.grad(logits[0, index], activation)
    weights = grad.mean((2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(1, keepdim=True)).detach()
    upsampled = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return upsampled[0, 0], cam[0, 0], logits.detach(), index


def gradcam_cost(model: ModelProfile, params: GradCamParams, images: int) -> Cost:
    """One forward pass; the backward pass stops at the layer (what it keeps for it is counted in bytes)."""
    return gradient_cost(model, model.input_size, 1, 1, "")

@method(
    "gradcam",
    summary="Class activation map from gradient-weighted channels of a conv layer (Selvaraju et al. 2017)",
    cost=gradcam_cost,
    evaluable=True, compare=True,
    category="attribute",
    params=GradCamParams,
    requires=(CLASSIFIER, LAYERS,),
)
def gradcam(model: ConvLensModel, inputs, params: GradCamParams, progress) -> Result:
    index = requested_class(model, params.target_class)
    layer = params.layer or model.spec.default_layer
    model.layer(layer)
    image = model.fit_input(inputs["image"], params.fit)
    clock = Stopwatch()
    upsampled, cam, logits, index = gradcam_map(model, to_tensor(image, model.device), layer, index)
    clock.lap("attribution_ms")
    return attribution_result(
        model, "gradcam", image, upsampled.cpu().numpy(), params,
        class_target(model, logits, index), "positive", clock.laps,
        layer=layer, arrays={"cam": cam.cpu().numpy().astype("float32")}, main="overlay",
    )
