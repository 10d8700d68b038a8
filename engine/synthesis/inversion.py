"""Feature inversion (Mahendran & Vedaldi 2015, "Understanding deep image
representations by inverting them", CVPR): from noise, find an image whose
features at one layer (a feature map or a vector) match a photo's,
regularised by total variation TV^beta, and report the relative feature
error ||f(x) - f(x0)|| / ||f(x0)||."""


from collections.abc import Mapping

import torch

from pydantic import Field

from engine import params as p
from engine.capabilities import LAYERS
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.optim.report import synthesis_result
from engine.optim.style_losses import relative_feature_loss, total_variation
from engine.params import AspectKept
from engine.synthesis.normalised_render import PixelSearchParams
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.models.units import named_layer
from engine.registry import InputSlot, method
from engine.result import Result
from engine.synthesis.feature_targets import features, photo_at
from engine.synthesis.normalised_render import render_from_noise


class FeatureInversionParams(AspectKept, PixelSearchParams):
    layer: str | None = Field(None, description="layer whose features are matched; default: the model's default layer", json_schema_extra=p.group("target"))
    max_side: int = p.max_side(224, what="the reconstruction (the photo's aspect)")
    tv_weight: float = Field(0.01, ge=0, le=1e3, description="weight of the TV^beta regularizer (pixels in [0, 1]) against the relative squared feature error")

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        inverted_layer(model, self.layer)


def inverted_layer(model: ConvLensModel | ModelProfile, layer: str | None) -> str:
    """The layer whose features are matched (``layer``, else the model's default), known to the model (feature maps
    and vectors both invert)."""
    layer = layer or model.spec.default_layer
    named_layer(model, layer)
    return layer


def relative_error(model: ConvLensModel, layer: str, image: torch.Tensor, target: torch.Tensor) -> float:
    """||f(image) - target|| / ||target|| at ``layer``."""
    found = features(model, image, [layer])[layer]
    return float((found - target).norm() / target.norm().clamp_min(1e-12))


def inversion_cost(model: ModelProfile, params: FeatureInversionParams, images: int) -> Cost:
    """The photo's features, the starting loss (its scale) and the result's: a forward pass each; a forward and a backward
    pass per step."""
    return gradient_cost(model, params.run_size(model.input_size), 2 * params.steps + 3, 1, "lower steps or max_side")

@method(
    "feature_inversion",
    summary="Reconstruct a picture from one layer's features (Mahendran & Vedaldi 2015)",
    requires=(LAYERS,),
    cost=inversion_cost,
    category="synthesize",
    params=FeatureInversionParams,
    inputs=(InputSlot("image", "the photo whose features are inverted"),),
    inline=False,
)
def feature_inversion(model: ConvLensModel, inputs, params: FeatureInversionParams, progress) -> Result:
    layer = inverted_layer(model, params.layer)
    photo = to_tensor(photo_at(model, inputs["image"], params.max_side, "the photo", [layer]), model.device)
    target = features(model, photo, [layer])[layer]
    objective = relative_feature_loss(layer, target)
    if params.tv_weight > 0:
        objective = objective + params.tv_weight * total_variation(params.tv_beta)
    rendered = render_from_noise(model, objective, tuple(photo.shape), params, progress)
    error = relative_error(model, layer, rendered.image, target)
    return synthesis_result(rendered, {"layer": layer, "relative_feature_error": error, "size": list(photo.shape[-2:])})
