"""Feature inversion (Mahendran & Vedaldi 2015, "Understanding deep image
representations by inverting them", CVPR): from noise, find an image whose
features at one layer (a feature map or a vector) match a photo's,
regularised by total variation TV^beta, and report the relative feature
error ||f(x) - f(x0)|| / ||f(x0)||."""

from typing import Literal

import torch
from pydantic import BaseModel, Field

from engine.capabilities import LAYERS
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.optim.report import synthesis_result
from engine.optim.style_losses import relative_feature_loss, total_variation
from engine.registry import InputSlot, method
from engine.result import Result
from engine.synthesis.feature_targets import features, resize_longest
from engine.synthesis.normalised_render import render_from_noise


class FeatureInversionParams(BaseModel):
    layer: str | None = Field(None, description="layer whose features are matched; default: the model's default layer")
    size: int = Field(224, ge=32, le=1024, description="longest side of the reconstruction in pixels (the photo's aspect is kept)")
    steps: int = Field(200, ge=1, le=2000, description="optimisation steps")
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="L-BFGS or Adam")
    lr: float = Field(1.0, gt=0, le=100, description="step size, pixels in 0..255 units")
    tv_weight: float = Field(0.01, ge=0, le=1e3, description="weight of the TV^beta regulariser (pixels in [0, 1]) against the relative squared feature error")
    tv_beta: float = Field(2.0, ge=1, le=4, description="exponent beta of the TV regulariser")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed for the noise the search starts from")
    preview_every: int = Field(10, ge=0, le=1000, description="a preview picture every N steps (0: none)")


def relative_error(model: ConvLensModel, layer: str, image: torch.Tensor, target: torch.Tensor) -> float:
    """||f(image) - target|| / ||target|| at ``layer``."""
    found = features(model, image, [layer])[layer]
    return float((found - target).norm() / target.norm().clamp_min(1e-12))


@method(
    "feature_inversion",
    summary="Reconstruct a picture from one layer's features (Mahendran & Vedaldi 2015)",
    requires=(LAYERS,),
    category="synthesise",
    params=FeatureInversionParams,
    inputs=(InputSlot("image", "the photo whose features are inverted"),),
    inline=False,
)
def feature_inversion(model: ConvLensModel, inputs, params: FeatureInversionParams, progress) -> Result:
    layer = params.layer or model.spec.default_layer
    model.layer_info(layer)  # raises UnknownLayer; feature maps and vectors both invert
    photo = to_tensor(resize_longest(inputs["image"], params.size), model.device)
    target = features(model, photo, [layer])[layer]
    objective = relative_feature_loss(layer, target)
    if params.tv_weight > 0:
        objective = objective + params.tv_weight * total_variation(params.tv_beta)
    rendered = render_from_noise(model, objective, tuple(photo.shape), params, progress)
    error = relative_error(model, layer, rendered.image, target)
    return synthesis_result(rendered, {"layer": layer, "relative_feature_error": error, "size": list(photo.shape[-2:])})
