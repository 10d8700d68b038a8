"""Layer choices, their validation, and the targets (features, Gram matrices)
that inversion, texture synthesis and style transfer match."""

import math
from typing import Sequence

import torch
from PIL import Image

from engine.errors import InvalidParams
from engine.models import ConvLensModel
from engine.models.layer_roles import role_layers
from engine.models.profile import ModelProfile
from engine.models.units import feature_map_info, named_layer, naming
from engine.optim.loop import features_of
from engine.optim.objectives import Objective
from engine.optim.style_losses import gram_matrix

MIN_SIDE = 32  # the networks here halve a picture five times: a shorter side is gone before their deepest layers


def content_layer_or_default(model: ConvLensModel | ModelProfile, layer: str | None) -> str:
    return layer if layer is not None else role_layers(model, "content")[0]


def style_layers_or_default(model: ConvLensModel | ModelProfile, layers: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(layers) if layers else role_layers(model, "style")


def check_feature_layers(model: ConvLensModel | ModelProfile, layers: Sequence[str], field: str) -> dict[str, int]:
    """Layer -> channel count of ``layers`` (the param ``field``): UnknownLayer for a layer the model lacks,
    InvalidParams for one that outputs a vector, not feature maps (the checks of :mod:`engine.models.units`)."""
    channels = {}
    for layer in layers:
        info = named_layer(model, layer, field)
        with naming(field):
            channels[layer] = feature_map_info(info).channels
    return channels


def weighted_layers(model: ConvLensModel | ModelProfile, layers: Sequence[str], field: str, weights: Sequence[float] | None,
                    name: str) -> dict[str, float]:
    """Layer -> weight for feature-map ``layers`` (the param ``field``): the given ``weights`` (the param called
    ``name``), else 1/C^2 for a layer of C channels. The errors of :func:`check_feature_layers`, and InvalidParams for
    a layer listed twice or a weight count unlike the layers'. Takes a loaded model or its profile (reads the catalogue only)."""
    channels = check_feature_layers(model, layers, field)
    if len(set(layers)) != len(layers):
        twice = sorted({layer for layer in layers if list(layers).count(layer) > 1})
        raise InvalidParams(f"layer {', '.join(map(repr, twice))} is listed twice")
    if weights is None:
        return {layer: 1.0 / channels[layer] ** 2 for layer in layers}
    if len(weights) != len(layers):
        raise InvalidParams(f"{name} takes one weight per layer: {len(layers)} layers ({', '.join(layers)}) but {len(weights)} weights")
    return dict(zip(layers, weights))


def reading(layers: Sequence[str]) -> Objective:
    """An objective that only names ``layers`` (to read their features)."""
    return Objective(lambda f, x: torch.zeros(()), layers, "read")


def features(model: ConvLensModel, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Detached features of ``layers`` for ``image`` (1, 3, H, W) (truncated forward pass)."""
    with torch.no_grad():
        return {name: value.detach() for name, value in features_of(model, reading(layers), image).items()}


def gram_targets(model: ConvLensModel, image: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Layer -> (C, C) Gram matrix of ``image``'s features."""
    return {name: gram_matrix(value)[0] for name, value in features(model, image, layers).items()}


def resize_longest(image: Image.Image, longest: int) -> Image.Image:
    """Resize so the longer side is ``longest`` pixels, keeping the aspect ratio."""
    w, h = image.size
    scale = longest / max(w, h)
    return image.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)


def check_min_side(size: tuple[int, int], what: str, change: str, minimum: int = MIN_SIDE) -> None:
    """Refuse a picture of ``size`` (height, width) with a side under ``minimum``, naming ``what`` and what to ``change``."""
    if min(size) < minimum:
        raise InvalidParams(f"{what} would be {size[1]}x{size[0]} px, under {minimum} px a side; {change}")


def shrink_before(model: ConvLensModel, layers: Sequence[str]) -> int:
    """How many times the network shrinks a picture before the deepest of ``layers`` (measured at its native size):
    a side shorter than that leaves that layer no pixel."""
    native = model.spec.input_size
    shapes = [model.layer_info(layer).shape for layer in layers]
    return max([math.ceil(native[a] / shape[1 + a]) for shape in shapes if len(shape) == 3 for a in range(2)], default=1)


def photo_at(model: ConvLensModel, image: Image.Image, max_side: int, what: str, layers: Sequence[str]) -> Image.Image:
    """``image`` resized so its longer side is ``max_side`` (:func:`resize_longest`), refused when too elongated
    for ``layers`` to see any of it."""
    resized = resize_longest(image, max_side)
    check_min_side((resized.height, resized.width), f"{what} at max_side {max_side}", "send a less elongated picture or raise max_side",
                   shrink_before(model, layers))
    return resized


def resize_to_pixels(image: Image.Image, pixels: int) -> Image.Image:
    """Resize to about ``pixels`` pixels, keeping the aspect ratio (style images)."""
    w, h = image.size
    scale = math.sqrt(pixels / (w * h))
    return image.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
