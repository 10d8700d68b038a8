"""Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391).

Weight each channel of a conv layer's output by the spatial mean of the class
score's gradient there, sum, keep the positive part, and upsample (bilinear)
to the input size. ``arrays["cam"]`` keeps the map at the layer's resolution.
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from pydantic import Field

from engine.capabilities import CLASSIFIER, LAYERS
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result
from engine.attribution.targets import class_target, requested_class, row_scores
from engine.attribution.timing import Stopwatch
from engine.errors import InvalidParams
from engine.hooks import capture
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.models.units import feature_map_info, naming
from engine.registry import Batching, method
from engine.result import Result


class GradCamParams(AttributionParams):
    layer: str | None = Field(None, description="conv layer to explain; default: the model's default layer")

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        super().check_call(model, counts)
        cam_layer(model, self.layer)


def cam_layer(model: ConvLensModel | ModelProfile, layer: str | None) -> str:
    """The layer Grad-CAM explains (``layer``, else the model's default), refused unless it outputs feature maps."""
    layer = layer or model.spec.default_layer
    with naming("layer"):
        feature_map_info(model.layer_info(layer))
    return layer


def gradcam_maps(model: ConvLensModel, x: torch.Tensor, layer: str, indices: list[int | None]):
    """For each picture (row) of ``x`` and its class (None: its top-1): (upsampled N x H x W maps,
    layer-resolution cams, logits, classes). Rows are separate pictures, as if each ran alone."""
    module = model.layer(layer)
    xg = x.detach().clone().requires_grad_(True)
    with capture({layer: module}) as features:
        logits = model(xg)
    activation = features[layer]
    if activation.dim() != 4:
        raise InvalidParams(f"Grad-CAM needs a layer with a spatial feature map; {layer!r} outputs {tuple(activation.shape)}")
    score, chosen = row_scores(logits, indices)
    (grad,) = torch.autograd.grad(score, activation)
    weights = grad.mean((2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(1, keepdim=True)).detach()
    upsampled = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return upsampled[:, 0], cam[:, 0], logits.detach(), chosen


def gradcam_batch(model: ConvLensModel, calls: list[tuple[dict, GradCamParams]]) -> list[Result]:
    """Grad-CAM of several pictures at one layer in one pass, each with its own class."""
    layers = {params.layer or model.spec.default_layer for _inputs, params in calls}
    if len(layers) != 1:
        raise ValueError(f"one Grad-CAM batch explains one layer, not {sorted(layers)}")
    layer = cam_layer(model, layers.pop())
    indices = [requested_class(model, params.target_class) for _inputs, params in calls]
    images = [model.fit_input(inputs["image"], params.fit) for inputs, params in calls]
    clock = Stopwatch()
    upsampled, cam, logits, indices = gradcam_maps(model, torch.cat([to_tensor(image, model.device) for image in images]), layer, indices)
    clock.lap("attribution_ms")
    return [
        attribution_result(
            model, "gradcam", image, upsampled[row].cpu().numpy(), params,
            class_target(model, logits[row : row + 1], indices[row]), "positive", clock.laps,
            layer=layer, arrays={"cam": cam[row].cpu().numpy().astype("float32")}, main="overlay",
        )
        for row, (image, (_inputs, params)) in enumerate(zip(images, calls))
    ]


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
    batching=Batching(key=lambda params: params.layer, run=gradcam_batch),
)
def gradcam(model: ConvLensModel, inputs, params: GradCamParams, progress) -> Result:
    return gradcam_batch(model, [(inputs, params)])[0]
