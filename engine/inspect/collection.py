"""Running a layer over a collection of images, in batches.

Every collection method shares the same knobs (size, fit, batch size) and the
same pass: fit each picture to one size, run the network in batches only as
deep as the layer needs (under ``torch.inference_mode``), report progress per
batch. The batch size changes speed and memory, never the answer.
"""

from typing import Callable, Literal

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, Field

from engine.errors import InvalidParams
from engine.hooks import capture, run_until
from engine.imaging import Fit, fit_image, to_tensor
from engine.models import ConvLensModel
from engine.progress import Progress

MAX_IMAGES = 256  # largest collection a method accepts


class CollectionParams(BaseModel):
    size: int | None = Field(None, ge=32, le=1024, description="square side images are resized to; default: the model's input size")
    fit: Fit = Field("stretch", description="how each picture is resized")
    batch_size: int = Field(16, ge=1, le=256, description="images per forward pass (speed and memory only; never changes the answer)")

    def shape(self, model: ConvLensModel) -> tuple[int, int]:
        return (self.size, self.size) if self.size else tuple(model.input_size)


def fit_all(images: list[Image.Image], size: tuple[int, int], fit: Fit) -> list[Image.Image]:
    return [fit_image(image, size, fit) for image in images]


def layer_outputs(
    model: ConvLensModel,
    images: list[Image.Image],
    layer: str,
    batch_size: int,
    progress: Progress,
    reduce: Callable[[torch.Tensor], torch.Tensor] = lambda x: x,
) -> torch.Tensor:
    """``reduce(output of layer)`` for every (already fitted) image, concatenated on CPU.

    ``reduce`` runs per batch, so a method that needs one channel or a pooled
    vector never holds every full feature map at once.
    """
    module = model.layer(layer)
    total = -(-len(images) // batch_size)
    parts = []
    with torch.inference_mode(), capture({layer: module}, stop_early=True, detach=True) as found:
        for step in range(total):
            chunk = images[step * batch_size : (step + 1) * batch_size]
            batch = torch.cat([to_tensor(image, model.device) for image in chunk])
            found.clear()
            run_until(model, batch)
            parts.append(reduce(found[layer]).float().cpu().clone())
            progress(step + 1, total)
    return torch.cat(parts)


Pooling = Literal["avg", "max", "flatten"]


class FeatureParams(CollectionParams):
    layer: str | None = Field(None, description="layer whose output is each image's feature vector; default: the model's penultimate layer")
    pooling: Pooling = Field("avg", description="how a feature map (C, H, W) becomes a vector: global average, global max, or flattened")


def feature_vectors(model: ConvLensModel, images: list[Image.Image], params: FeatureParams, progress: Progress) -> tuple[np.ndarray, str]:
    """(N, D) float32 feature vectors of already fitted images, and the layer they came from."""
    layer = params.layer or model.spec.penultimate
    if layer is None:
        raise InvalidParams(f"model {model.spec.name!r} names no penultimate layer; pass params.layer")
    model.layer(layer)

    def pool(output: torch.Tensor) -> torch.Tensor:
        if output.dim() == 4 and params.pooling == "avg":
            return output.mean((2, 3))
        if output.dim() == 4 and params.pooling == "max":
            return output.amax((2, 3))
        return output.flatten(1)

    return layer_outputs(model, images, layer, params.batch_size, progress, pool).numpy(), layer
