"""A model's layers at its native size, known without its weights: what cost estimates read.

Registered models carry the catalogue measured when they were vetted; a
built-in's is traced once on the ``meta`` device from its architecture (no
weights, no arithmetic), so estimating a call's cost never loads a network.
"""

import threading
from dataclasses import dataclass

import torch

from engine.errors import UnknownLayer
from engine.models import units
from engine.models.wrapper import ConvLensModel, LayerInfo
from engine.models.zoo import ModelSpec, load_model


@dataclass(frozen=True)
class ModelProfile:
    spec: ModelSpec
    layers: tuple[LayerInfo, ...]

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input_size

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.spec.labels

    def class_index(self, target: int | str) -> int:
        """As :meth:`ConvLensModel.class_index` (:func:`engine.models.units.class_index`)."""
        return units.class_index(self.spec.name, self.labels, target)

    def catalogue(self) -> tuple[LayerInfo, ...]:
        return self.layers

    def layer_info(self, name: str, size: tuple[int, int] | None = None) -> LayerInfo:
        """The layer's kind and shape at the native size, whatever ``size``: its channels and kind hold at every size,
        its height and width only at the native one (see :func:`engine.models.units.check_neuron`)."""
        for info in self.layers:
            if info.name == name:
                return info
        hint = ", ".join(info.name for info in self.layers[:8])
        raise UnknownLayer(f"model {self.spec.name!r} has no layer {name!r} with a feature map or vector output; e.g. {hint} "
                           f"(see GET /v1/models/{self.spec.name})")


_TRACED: dict[str, tuple[LayerInfo, ...]] = {}
_LOCK = threading.Lock()


def model_profile(spec: ModelSpec) -> ModelProfile:
    if spec.layers is not None:
        return ModelProfile(spec, spec.layers)
    with _LOCK:
        if spec.identity not in _TRACED:
            _TRACED[spec.identity] = _traced_catalogue(spec)
        return ModelProfile(spec, _TRACED[spec.identity])


def _traced_catalogue(spec: ModelSpec) -> tuple[LayerInfo, ...]:
    if spec.architecture is None:  # a plugin's model without one: its weights are the service's own
        return load_model(spec).catalogue()
    with torch.device("meta"):
        net = spec.architecture()
    return ConvLensModel(spec, net).to("meta").catalogue()
