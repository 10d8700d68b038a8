"""Filters: the learned convolution kernels, drawn as pictures.

First-layer filters act on pixels, so they are drawn as RGB tiles (Krizhevsky
et al. 2012, Fig. 3; Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901).
Each is shown as the kernel the layer applies to this service's RGB [0, 1]
pixels: VGG19's Caffe weights see BGR, so their channel axis is flipped back to
RGB (and divided by the per-channel std, which for EfficientNet's ImageNet
normalisation rescales R, G and B slightly). Deeper filters see feature maps,
not colours: each is drawn as one grey tile per input channel, one row per
filter. Tiles are min-max normalised per filter or over all drawn filters and
upscaled with nearest neighbour so a 3x3 kernel stays visible.
"""

from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from engine.capabilities import LAYERS
from engine.cost import Cost
from engine.imaging import tile_grid
from engine.inspect.display import normalise_tiles, pick_channels, to_uint8, upscale, zoom_for
from engine.models import ConvLensModel
from engine.models.profile import ModelProfile
from engine.models.units import conv_info, naming
from engine import params as p
from engine.params import Params
from engine.registry import method
from engine.result import Result


class FiltersParams(Params):
    layer: str | None = Field(None, description="a convolution layer; default: the model's first convolution", json_schema_extra=p.group("target"))
    channels: list[int] | None = p.channels(1024, "output channels (filters) to draw, in this order; default: the first max_filters")
    max_filters: int = Field(64, ge=1, le=1024, description="draw at most this many filters")
    max_input_channels: int = Field(32, ge=1, le=1024, description="deeper layers: grey tiles drawn per filter (its first input channels)", json_schema_extra=p.RARE)
    normalization: Literal["per_filter", "global"] = Field("per_filter", description="min-max scale each filter on its own, or all drawn filters together")
    tile_size: int = p.tile_size(32, what="each drawn tile at least (tiles are upscaled, nearest neighbor, by an integer factor)")

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        filters = conv_info(model, self.layer or model.spec.first_conv).weight[0]
        with naming("channels"):
            pick_channels(self.channels, filters, filters)


def conv_layer(model: ConvLensModel, name: str) -> nn.Conv2d:
    """The convolution module ``name`` (the param ``layer``), checked as at submission."""
    conv_info(model, name)
    return model.layer(name)


def pixel_space_kernels(model: ConvLensModel, weight: torch.Tensor) -> np.ndarray:
    """First-layer kernels (F, 3, k, k) as applied to RGB [0, 1] pixels, as (F, k, k, 3)."""
    pre = model.spec.preprocessing
    std = torch.tensor(pre.std, dtype=weight.dtype).view(1, 3, 1, 1) / pre.scale
    kernels = weight / std
    if pre.channel_order == "BGR":
        kernels = kernels.flip(1)
    return kernels.permute(0, 2, 3, 1).numpy()


def filters_cost(model: ModelProfile, params: FiltersParams, images: int) -> Cost:
    """No pass; the upscaled tiles and the grid they are copied into, one byte per grey (three per RGB) pixel."""
    layer = params.layer or model.spec.first_conv
    count, inputs, *kernel = conv_info(model, layer).weight
    drawn = min(len(set(params.channels)) if params.channels is not None else count, params.max_filters)
    rgb = layer == model.spec.first_conv and inputs == 3
    side = max(kernel) * zoom_for(max(kernel), params.tile_size) + 1
    pixels = drawn * (1 if rgb else min(inputs, params.max_input_channels)) * side * side
    return Cost(0, pixels, 2 * pixels * (3 if rgb else 1), "lower max_filters, max_input_channels or tile_size")


@method(
    "filters",
    summary="A convolution layer's learned filters as a picture grid (RGB for the first layer)",
    requires=(LAYERS,),
    category="inspect",
    params=FiltersParams,
    inputs=(),
    queue="cpu",
    cost=filters_cost,
)
def filters(model: ConvLensModel, inputs, params: FiltersParams, progress) -> Result:
    layer = params.layer or model.spec.first_conv
    conv = conv_layer(model, layer)
    weight = conv.weight.detach().float().cpu()
    chosen = pick_channels(params.channels, weight.shape[0], params.max_filters)
    selected = weight[chosen]
    rgb = layer == model.spec.first_conv and selected.shape[1] == 3
    each = params.normalization == "per_filter"
    zoom = zoom_for(max(selected.shape[2:]), params.tile_size)
    if rgb:
        tiles = to_uint8(normalise_tiles(pixel_space_kernels(model, selected), each))
        grid = tile_grid(upscale(tiles, zoom))
        shown_inputs = 3
    else:
        shown_inputs = min(selected.shape[1], params.max_input_channels)
        per_input = to_uint8(normalise_tiles(selected[:, :shown_inputs].numpy(), each))
        grid = tile_grid(upscale(per_input.reshape(-1, *per_input.shape[2:]), zoom), columns=shown_inputs)
    arrays = {"weights": selected.numpy()}
    if conv.bias is not None:
        arrays["bias"] = conv.bias.detach().float().cpu()[chosen].numpy()
    data = {
        "layer": layer,
        "weight_shape": list(weight.shape),
        "groups": conv.groups,
        "filters": chosen,
        "drawn_as": "rgb" if rgb else "grey per input channel",
        "input_channels_drawn": shown_inputs,
        "normalization": params.normalization,
        "zoom": zoom,
    }
    if rgb:
        data["channel_order"] = f"drawn as RGB; the network's own order is {model.spec.preprocessing.channel_order}"
    return Result(images={"filters": grid}, arrays=arrays, data=data, main="filters")
