"""Texture synthesis (Gatys, Ecker & Bethge 2015, "Texture synthesis using
convolutional neural networks", NeurIPS): from noise, match the Gram matrices
of a texture photo at several layers. Gram matrices are averages over
positions, so the output may have any size."""

from collections.abc import Mapping

from pydantic import Field

from engine import params as p
from engine.capabilities import LAYERS, RESIZABLE
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.optim.report import synthesis_result
from engine.optim.style_losses import style_loss, total_variation
from engine.synthesis.normalised_render import PixelSearchParams
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result
from engine.synthesis.feature_targets import (
    gram_targets,
    photo_at,
    style_layers_or_default,
    weighted_layers,
)
from engine.synthesis.normalised_render import render_from_noise


class TextureSynthesisParams(PixelSearchParams):
    layers: list[str] | None = Field(None, min_length=1, max_length=16, description="layers whose Gram matrices are matched; default block1..5_relu1 on vgg19", json_schema_extra=p.RARE)
    layer_weights: p.Weights | None = p.weights(16, "one weight per layer; default 1/C^2 for a layer with C channels", json_schema_extra=p.RARE)
    max_side: int = p.max_side(256, what="the texture photo")
    height: int = Field(256, ge=32, le=1024, description="output height in pixels")
    width: int = Field(256, ge=32, le=1024, description="output width in pixels")

    def run_size(self, native: tuple[int, int]) -> tuple[int, int]:
        return max(self.height, self.max_side), max(self.width, self.max_side)

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        weighted_layers(model, style_layers_or_default(model, self.layers), "layers", self.layer_weights, "layer_weights")


def texture_cost(model: ModelProfile, params: TextureSynthesisParams, images: int) -> Cost:
    """The texture's Gram matrices, the starting loss (its scale) and the result's: a forward pass each; a forward and a
    backward pass per step."""
    return gradient_cost(model, params.run_size(model.input_size), 2 * params.steps + 3, 1, "lower steps, height, width or max_side",
                         pixels=3 * params.height * params.width)

@method(
    "texture_synthesis",
    summary="Synthesise a new texture with a photo's Gram statistics (Gatys et al. 2015)",
    requires=(LAYERS, RESIZABLE,),
    cost=texture_cost,
    category="synthesize",
    params=TextureSynthesisParams,
    inputs=(InputSlot("image", "the texture photo"),),
    inline=False,
)
def texture_synthesis(model: ConvLensModel, inputs, params: TextureSynthesisParams, progress) -> Result:
    layers = style_layers_or_default(model, params.layers)
    weights = weighted_layers(model, layers, "layers", params.layer_weights, "layer_weights")
    texture = to_tensor(photo_at(model, inputs["image"], params.max_side, "the texture photo", layers), model.device)
    objective = style_loss(weights, [gram_targets(model, texture, layers)])
    if params.tv_weight > 0:
        objective = objective + params.tv_weight * total_variation(params.tv_beta)
    rendered = render_from_noise(model, objective, (1, 3, params.height, params.width), params, progress)
    return synthesis_result(rendered, {"layers": list(layers), "size": [params.height, params.width]})
