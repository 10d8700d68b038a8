"""Running a layer over a collection of images, in batches.

Every collection method shares the same knobs (size, fit, batch size) and the
same pass: fit each picture to one size, run the network in batches only as
deep as the layer needs (under ``torch.inference_mode``), report progress per
batch. The batch size changes speed and memory, never the answer.

Feature vectors are derived data: :func:`feature_vectors` looks them up in a
:class:`FeatureCache` (the worker's and the API's live in object storage)
under a key made of the model, layer, pooling and the content hash of every
fitted picture, so a collection embedded once is found again, and a changed
collection (another picture, another size or fit) gets a new key.
"""

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, Literal, Protocol

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, Field

from engine.errors import InvalidParams
from engine.hooks import capture, run_until
from engine import params as p
from engine.imaging import Fit, to_tensor
from engine.models import ConvLensModel
from engine.params import Fitted, Sized
from engine.models.units import named_layer
from engine.progress import Progress

if TYPE_CHECKING:
    from engine.models.profile import ModelProfile

MAX_IMAGES = 256  # largest collection a method accepts


class CollectionParams(Sized, Fitted):
    size: int | None = p.size(None)
    batch_size: int = p.batch_size(16)

    def shape(self, model: ConvLensModel) -> tuple[int, int]:
        return (self.size, self.size) if self.size else tuple(model.input_size)


def fit_all(model: ConvLensModel, images: list[Image.Image], size: tuple[int, int], fit: Fit | None) -> list[Image.Image]:
    return [model.fit_input(image, fit, size) for image in images]


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
            batch = torch.cat([to_tensor(image, model.device) for image in chunk]).contiguous(memory_format=torch.channels_last)  # faster convs on CPU
            found.clear()
            run_until(model, batch)
            parts.append(reduce(found[layer]).float().cpu().clone())
            progress(step + 1, total)
    return torch.cat(parts)


Pooling = Literal["avg", "max", "flatten"]


class FeatureParams(CollectionParams):
    layer: str | None = Field(None, description="layer whose output is each image's feature vector; default: the model's penultimate layer", json_schema_extra=p.group("target"))
    pooling: Pooling = Field("avg", description="how a feature map (C, H, W) becomes a vector: global average, global max, or flattened")

    def check_call(self, model: "ModelProfile", counts: Mapping[str, int]) -> None:
        if self.layer is not None:
            named_layer(model, self.layer)


class FeatureCache(Protocol):
    def load(self, key: str) -> np.ndarray | None: ...

    def save(self, key: str, features: np.ndarray) -> None: ...


class Features(BaseModel):
    """Where a collection's feature vectors came from."""

    layer: str
    pooling: Pooling
    key: str
    cached: bool


def features_key(model: ConvLensModel, images: list[Image.Image], layer: str, pooling: Pooling) -> str:
    """Content hash of what the vectors depend on: model, layer, pooling and every fitted picture's pixels.

    The model is its identity (a registered model's file and metadata), not its name: names are per tenant
    and can be given to another file, and the cache is shared by every tenant.
    """
    digest = hashlib.sha256(f"{model.spec.identity}\n{layer}\n{pooling}\n".encode())
    for image in images:
        rgb = image.convert("RGB")
        digest.update(f"{rgb.width}x{rgb.height}\n".encode())
        digest.update(hashlib.sha256(rgb.tobytes()).digest())
    return digest.hexdigest()[:40]


def feature_vectors(
    model: ConvLensModel, images: list[Image.Image], params: FeatureParams, progress: Progress, cache: FeatureCache | None = None
) -> tuple[np.ndarray, Features]:
    """(N, D) float32 feature vectors of already fitted images, and where they came from.

    With a ``cache`` the vectors are read from it when present (no forward
    pass, no progress) and stored into it when computed.
    """
    layer = params.layer or model.spec.penultimate
    if layer is None:
        raise InvalidParams(f"model {model.spec.name!r} names no penultimate layer; pass params.layer")
    model.layer(layer)
    key = features_key(model, images, layer, params.pooling)
    found = cache.load(key) if cache is not None else None
    if found is not None and found.shape[0] == len(images):
        return found, Features(layer=layer, pooling=params.pooling, key=key, cached=True)

    def pool(output: torch.Tensor) -> torch.Tensor:
        if output.dim() == 4 and params.pooling == "avg":
            return output.mean((2, 3))
        if output.dim() == 4 and params.pooling == "max":
            return output.amax((2, 3))
        return output.flatten(1)

    vectors = layer_outputs(model, images, layer, params.batch_size, progress, pool).numpy()
    if cache is not None:
        cache.save(key, vectors)
    return vectors, Features(layer=layer, pooling=params.pooling, key=key, cached=False)
