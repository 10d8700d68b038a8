"""Maximally activating patches: for one channel of one layer, the image
regions across a collection that excite it most (Girshick et al. 2014,
https://arxiv.org/abs/1311.2524; Zeiler & Fergus 2014). Each patch is the
receptive field of the winning position, computed analytically from the
conv/pool chain; the part of the field beyond the image border is drawn grey.
``channel_overview`` asks the reverse question of a layer: which of its
channels this collection excites most (mean over images of each channel's
peak), each drawn with its best patch.
"""

from collections.abc import Mapping

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from engine import params as p
from engine.capabilities import LAYERS
from engine.imaging import tile_grid
from engine.inspect.collection import MAX_IMAGES, CollectionParams, fit_all, layer_outputs
from engine.inspect.display import captioned
from engine.inspect.receptive_field import receptive_field
from engine.models import ConvLensModel
from engine.models.units import check_channel, drawn_layer, naming
from engine.picture_names import caption, picture_ref
from engine.cost import Cost, forward_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result

BORDER = (124, 116, 104)  # the ImageNet mean colour, for field beyond the image


class MaxPatchesParams(CollectionParams):
    layer: str | None = Field(None, description="layer with a feature-map output; default: the model's default layer", json_schema_extra=p.group("target"))
    channel: int = Field(0, ge=0, le=65535, description="channel of that layer")
    top_k: int = p.top_k(9, 64, "patches to return, the most excited first")
    per_image: int = Field(1, ge=1, le=64, description="at most this many positions from one image")
    tile_size: int = p.tile_size(64, 16, what="each drawn patch")

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        _layer, info = drawn_layer(model, self.layer)
        with naming("channel"):
            check_channel(info, self.channel)


def patch(image: Image.Image, box: tuple[int, int, int, int]) -> tuple[Image.Image, list[int]]:
    """The receptive-field box cut from ``image`` (grey beyond its border), and the box clipped to the image."""
    left, top, right, bottom = box
    clipped = [max(left, 0), max(top, 0), min(right, image.width), min(bottom, image.height)]
    canvas = Image.new("RGB", (right - left, bottom - top), BORDER)
    if clipped[0] < clipped[2] and clipped[1] < clipped[3]:  # a box wholly beyond the picture stays grey
        canvas.paste(image.crop(clipped), (clipped[0] - left, clipped[1] - top))
    return canvas, clipped


def strongest(maps: np.ndarray, top_k: int, per_image: int) -> list[tuple[int, int, float]]:
    """(image, flat position, value) of the top_k values, at most per_image from each image.

    Ties go to the lower image index, then the lower position.
    """
    flat = maps.reshape(len(maps), -1)
    per_image = min(per_image, flat.shape[1])
    order = np.argsort(-flat, axis=1, kind="stable")[:, :per_image]
    candidates = [(i, int(p), float(flat[i, p])) for i in range(len(flat)) for p in order[i]]
    candidates.sort(key=lambda c: -c[2])
    return candidates[:top_k]


def patches_cost(model: ModelProfile, params: CollectionParams, images: int) -> Cost:
    """One forward pass per picture, stopped at the layer, a batch alive at once; one more finds the layer's receptive field."""
    return forward_cost(model, params.run_size(model.input_size), images + 1, params.batch_size, "use fewer or smaller pictures")

@method(
    "max_activating_patches",
    summary="The image patches of a collection that most activate one channel, cut at its receptive field",
    requires=(LAYERS,),
    cost=patches_cost,
    category="inspect",
    params=MaxPatchesParams,
    inputs=(InputSlot("images", "the collection to search", many=True, min_count=1, max_count=MAX_IMAGES),),
    inline=False,
)
def max_activating_patches(model: ConvLensModel, inputs, params: MaxPatchesParams, progress) -> Result:
    size = params.shape(model)
    layer, info = drawn_layer(model, params.layer, size)
    with naming("channel"):
        check_channel(info, params.channel)
    field = receptive_field(model, layer, size)
    images = fit_all(model, inputs["images"], size, params.fit)
    maps = layer_outputs(model, images, layer, params.batch_size, progress, lambda x: x[:, params.channel]).numpy()
    width = maps.shape[2]
    found, tiles, pixels = [], [], []
    for index, position, value in strongest(maps, params.top_k, params.per_image):
        y, x = divmod(position, width)
        box = field.box(y, x)
        picture, clipped = patch(images[index], box)
        pixels.append(np.asarray(picture))
        resample = Image.NEAREST if params.tile_size >= picture.width else Image.BILINEAR
        tiles.append(captioned(picture.resize((params.tile_size, params.tile_size), resample), f"{caption(inputs['images'], index)} {value:.3g}"))
        found.append({"image": picture_ref(inputs["images"], index), "position": [y, x], "activation": value, "box": list(box), "box_in_image": clipped})
    data = {
        "layer": layer,
        "channel": params.channel,
        "map_shape": list(maps.shape[1:]),
        "image_size": list(size),
        "receptive_field": field.as_dict(),
        "patches": found,
    }
    return Result(
        images={"patches": tile_grid(np.stack(tiles))},
        arrays={"maps": maps, "patch_pixels": np.stack(pixels)},
        data=data,
        main="patches",
    )


class OverviewParams(CollectionParams):
    layer: str | None = Field(None, description="layer with a feature-map output; default: the model's default layer", json_schema_extra=p.group("target"))
    top_k: int = p.top_k(16, 256, "channels to show, the most excited first")
    tile_size: int = p.tile_size(64, 16, what="each drawn patch")

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        drawn_layer(model, self.layer)


@method(
    "channel_overview",
    summary="Which channels of a layer a collection excites most, each with its strongest patch",
    requires=(LAYERS,),
    cost=patches_cost,
    category="inspect",
    params=OverviewParams,
    inputs=(InputSlot("images", "the collection", many=True, min_count=1, max_count=MAX_IMAGES),),
)
def channel_overview(model: ConvLensModel, inputs, params: OverviewParams, progress) -> Result:
    size = params.shape(model)
    layer, info = drawn_layer(model, params.layer, size)
    field = receptive_field(model, layer, size)
    images = fit_all(model, inputs["images"], size, params.fit)
    width = info.shape[2]

    def peaks(output):  # (N, C): each channel's peak and where it is
        flat = output.flatten(2)
        values, positions = flat.max(2)
        return torch.stack([values, positions.to(values.dtype)], -1)

    found = layer_outputs(model, images, layer, params.batch_size, progress, peaks).numpy()
    values, positions = found[..., 0], found[..., 1].astype(np.int64)
    excitement = values.mean(0)
    order = np.argsort(-excitement, kind="stable")[: params.top_k]
    channels, tiles = [], []
    for c in order:
        best = int(values[:, c].argmax())
        y, x = divmod(int(positions[best, c]), width)
        picture, _ = patch(images[best], field.box(y, x))
        tiles.append(captioned(picture.resize((params.tile_size, params.tile_size), Image.BILINEAR), f"ch{c} {excitement[c]:.3g}"))
        channels.append({"channel": int(c), "mean_peak": float(excitement[c]), "best_image": picture_ref(inputs["images"], best),
                         "position": [y, x], "box": list(field.box(y, x))})
    data = {"layer": layer, "image_size": list(size), "receptive_field": field.as_dict(), "channels": channels}
    return Result(images={"overview": tile_grid(np.stack(tiles))}, arrays={"mean_peaks": excitement}, data=data, main="overview")
