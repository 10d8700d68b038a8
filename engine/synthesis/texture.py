"""Texture synthesis (Gatys, Ecker & Bethge 2015, "Texture synthesis using
convolutional neural networks", NeurIPS): from noise, match the Gram matrices
of a texture photo at several layers. Gram matrices are averages over
positions, so the output may have any size."""

from typing import Literal

from pydantic import BaseModel, Field

from engine.capabilities import LAYERS, RESIZABLE
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.optim.report import synthesis_result
from engine.optim.style_losses import style_loss, total_variation
from engine.registry import InputSlot, method
from engine.result import Result
from engine.synthesis.feature_targets import (
    check_feature_layers,
    check_weights,
    gram_targets,
    layer_weights,
    resize_longest,
    style_layers_or_default,
)
from engine.synthesis.normalised_render import render_from_noise


class TextureSynthesisParams(BaseModel):
    layers: list[str] | None = Field(None, min_length=1, max_length=16, description="layers whose Gram matrices are matched; default block1..5_relu1 on vgg19")
    layer_weights: list[float] | None = Field(None, max_length=16, description="one weight per layer; default 1/C^2 for a layer with C channels")
    texture_size: int = Field(256, ge=32, le=1024, description="the texture photo is resized so its longest side has this many pixels")
    height: int = Field(256, ge=32, le=1024, description="output height in pixels")
    width: int = Field(256, ge=32, le=1024, description="output width in pixels")
    steps: int = Field(200, ge=1, le=2000, description="optimisation steps")
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="L-BFGS (as in the paper) or Adam")
    lr: float = Field(1.0, gt=0, le=100, description="step size, pixels in 0..255 units")
    tv_weight: float = Field(0.0, ge=0, le=1e3, description="weight of a TV^beta regulariser (pixels in [0, 1])")
    tv_beta: float = Field(2.0, ge=1, le=4, description="exponent beta of the TV regulariser")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed for the starting noise")
    preview_every: int = Field(10, ge=0, le=1000, description="a preview picture every N steps (0: none)")


@method(
    "texture_synthesis",
    summary="Synthesise a new texture with a photo's Gram statistics (Gatys et al. 2015)",
    requires=(LAYERS, RESIZABLE,),
    category="synthesise",
    params=TextureSynthesisParams,
    inputs=(InputSlot("image", "the texture photo"),),
    inline=False,
)
def texture_synthesis(model: ConvLensModel, inputs, params: TextureSynthesisParams, progress) -> Result:
    layers = style_layers_or_default(model, params.layers)
    channels = check_feature_layers(model, layers)
    weights = layer_weights(layers, params.layer_weights, [1.0 / channels[layer] ** 2 for layer in layers])
    check_weights("layer_weights", list(weights.values()))
    texture = to_tensor(resize_longest(inputs["image"], params.texture_size), model.device)
    objective = style_loss(weights, [gram_targets(model, texture, layers)])
    if params.tv_weight > 0:
        objective = objective + params.tv_weight * total_variation(params.tv_beta)
    rendered = render_from_noise(model, objective, (1, 3, params.height, params.width), params, progress)
    return synthesis_result(rendered, {"layers": list(layers), "size": [params.height, params.width]})
