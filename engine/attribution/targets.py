"""What an attribution explains: a class score, or one channel (or neuron) of a layer."""

from dataclasses import dataclass
from typing import Literal

import torch

from engine.devices import on_device
from engine.errors import InvalidParams, UnknownClass
from engine.models import ConvLensModel
from engine.models.profile import ModelProfile
from engine.models.units import check_channel, check_neuron, naming


def requested_class(model: ConvLensModel, target: int | str | None) -> int | None:
    """Validate a requested class before any work; None means "the predicted top-1"."""
    if target is not None:
        return model.class_index(target)
    if model.labels is None:
        raise UnknownClass(f"model {model.spec.name!r} has no classifier head, so it has no classes to explain")
    return None


def pick_class(logits: torch.Tensor, index: int | None) -> int:
    """``index``, or the top-1 class of the first row of ``logits``."""
    return int(logits[0].argmax()) if index is None else index


def row_scores(logits: torch.Tensor, indices: list[int | None]) -> tuple[torch.Tensor, list[int]]:
    """Each row's class score summed (index None: that row's top-1 class), and the classes: one backward
    pass of the sum gives every row the gradient of its own score, rows being separate pictures."""
    tops = logits.argmax(1).tolist() if None in indices else None  # read back once, not once per row
    chosen = [tops[row] if index is None else index for row, index in enumerate(indices)]
    rows = torch.arange(len(chosen), device=logits.device)
    return logits[rows, on_device(chosen, logits.device)].sum(), chosen


def class_target(model: ConvLensModel, logits: torch.Tensor, index: int) -> dict:
    """The explained class as every answer names one, with its logit as ``score``."""
    row = logits[0].detach().float()
    return model.class_entry(index, row.softmax(-1), row)


@dataclass(frozen=True)
class UnitTarget:
    """One channel of a layer (its mean or max over positions), or one neuron at (y, x)."""

    layer: str
    channel: int
    neuron: tuple[int, int] | None = None
    reduce: Literal["mean", "max"] = "mean"

    @classmethod
    def checked(cls, model: ConvLensModel | ModelProfile, layer: str, channel: int | None, neuron, reduce, size) -> "UnitTarget":
        """The unit, after checking (loaded model or its profile, the params' names in the errors) that the layer has a
        map or vector, the channel exists and the neuron lies inside the map at ``size`` (the native size: a profile's)."""
        if channel is None:
            raise InvalidParams("params.channel: a layer target needs a channel")
        with naming("layer"):
            info = model.layer_info(layer, size)
        with naming("channel"):
            check_channel(info, channel)
        with naming("neuron"):
            neuron = check_neuron(info, neuron)
        return cls(layer, channel, neuron, reduce)

    def score(self, activation: torch.Tensor) -> torch.Tensor:
        """The scalar to differentiate, from the layer's output (batch of one)."""
        unit = activation[0, self.channel]
        if self.neuron is not None:
            return unit[self.neuron]
        return unit.mean() if self.reduce == "mean" else unit.max()

    def as_dict(self, value: float) -> dict:
        return {
            "layer": self.layer,
            "channel": self.channel,
            "neuron": list(self.neuron) if self.neuron else None,
            "reduce": None if self.neuron else self.reduce,
            "value": value,
        }
