"""Activations: the feature maps one layer computes for one image, drawn as a
grid of grey tiles (Yosinski et al. 2015, "Understanding Neural Networks
Through Deep Visualization", https://arxiv.org/abs/1506.06579), with each
channel's mean, max and fraction of exact zeros (dead after a ReLU)."""

from collections.abc import Mapping
from typing import Literal

import torch
from pydantic import Field

from engine.capabilities import LAYERS
from engine.cost import FLOAT, Cost, area_ratio, forward_peak
from engine.errors import InvalidParams
from engine.hooks import capture, run_until
from engine import params as p
from engine.imaging import tile_grid, to_tensor
from engine.inspect.display import normalise_tiles, pick_channels, to_uint8, upscale, zoom_for
from engine.models import ConvLensModel
from engine.models.profile import ModelProfile
from engine.models.units import drawn_layer, naming
from engine.params import Fitted, Sized
from engine.registry import method
from engine.result import Result


class ActivationsParams(Sized, Fitted):
    layer: str | None = Field(None, description="layer with a feature-map output; default: the model's default layer", json_schema_extra=p.group("target"))
    size: int | None = p.size(None)
    channels: list[int] | None = p.channels(4096, "channels to draw, in this order; default: all (up to max_channels)")
    top_k: int | None = p.top_k(None, 4096, "channels to draw (of those selected), those with the largest mean activation first; default: all")
    max_channels: int = Field(2048, ge=1, le=4096, description="draw at most this many channels", json_schema_extra=p.RARE)
    normalization: Literal["per_channel", "global"] = Field("per_channel", description="min-max scale each map on its own, or all drawn maps together")
    tile_size: int = p.tile_size(32, what="each drawn map at least (small maps are upscaled, nearest neighbor, by an integer factor)")

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        _layer, info = drawn_layer(model, self.layer)
        with naming("channels"):
            pick_channels(self.channels, info.channels, info.channels)


def feature_map(model: ConvLensModel, image: torch.Tensor, layer: str) -> torch.Tensor:
    """The (C, H, W) output of ``layer`` for one image, from a forward pass stopped there."""
    with torch.inference_mode(), capture({layer: model.layer(layer)}, stop_early=True, detach=True) as found:
        run_until(model, image)
        output = found[layer].float().cpu().clone()
    if output.dim() != 4:
        raise InvalidParams(f"layer {layer!r} outputs a vector {tuple(output.shape[1:])}, not feature maps; pick a convolutional layer")
    return output[0]


def activations_cost(model: ModelProfile, params: ActivationsParams, images: int) -> Cost:
    """One forward pass; the layer's float maps (returned as an array) and the upscaled grid of those drawn."""
    layer = params.layer or model.spec.default_layer or model.spec.first_conv
    size = (params.size, params.size) if params.size else tuple(model.input_size)
    shape = model.layer_info(layer).shape
    if len(shape) != 3:
        return Cost(1, 3 * size[0] * size[1], forward_peak(model, size), "")
    scale = area_ratio(model, size) ** 0.5
    channels, height, width = shape[0], max(1, round(shape[1] * scale)), max(1, round(shape[2] * scale))
    drawn = min(len(set(params.channels)) if params.channels is not None else channels, params.top_k or channels, params.max_channels)
    zoom = zoom_for(max(height, width), params.tile_size)
    grid = drawn * (height * zoom + 1) * (width * zoom + 1)
    array = channels * height * width * FLOAT
    return Cost(1, grid + 3 * size[0] * size[1], 2 * array + 2 * grid + forward_peak(model, size), "lower size or pick fewer channels")


@method(
    "activations",
    summary="One layer's feature maps for an image, as a grid, with per-channel statistics",
    requires=(LAYERS,),
    category="inspect",
    params=ActivationsParams,
    cost=activations_cost,
)
def activations(model: ConvLensModel, inputs, params: ActivationsParams, progress) -> Result:
    layer = params.layer or model.spec.default_layer or model.spec.first_conv
    size = (params.size, params.size) if params.size else tuple(model.input_size)
    image = model.fit_input(inputs["image"], params.fit, size)
    maps = feature_map(model, to_tensor(image, model.device), layer)
    means, peaks = maps.mean((1, 2)), maps.amax((1, 2))
    zeros = (maps == 0).float().mean((1, 2))
    chosen = pick_channels(params.channels, maps.shape[0], maps.shape[0])
    if params.top_k is not None:
        chosen = sorted(chosen, key=lambda c: -float(means[c]))[: params.top_k]
    chosen = chosen[: params.max_channels]
    values = maps[chosen].numpy()
    zoom = zoom_for(max(values.shape[1:]), params.tile_size)
    grid = tile_grid(upscale(to_uint8(normalise_tiles(values, params.normalization == "per_channel")), zoom))
    data = {
        "layer": layer,
        "shape": list(maps.shape),
        "channels": chosen,
        "normalization": params.normalization,
        "zoom": zoom,
        "stats": {"mean": means.tolist(), "max": peaks.tolist(), "zero_fraction": zeros.tolist()},
    }
    return Result(
        images={"activations": grid, "input": image},
        arrays={"maps": maps.numpy()},
        data=data,
        main="activations",
    )
