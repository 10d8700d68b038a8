"""The model every method receives: pixels in, the network's outputs out.

Methods work in one space for every network: RGB images in [0, 1], NCHW.
:class:`ConvLensModel` applies the network's own preprocessing (channel order,
scale, mean/std) as its first step, so gradients, clipping and 8-bit
quantisation mean the same thing for EfficientNet and for Caffe-style VGG19.
Layer names are those of the wrapped network (``net.named_modules()``).
"""

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch
from PIL import Image
from torch import nn

from engine.concurrency import GATE
from engine.errors import UnknownLayer
from engine.models import units
from engine.hooks import this_thread_only
from engine.imaging import Fit, fit_image

if TYPE_CHECKING:
    from engine.models.zoo import ModelSpec


CATALOGUE_SIZES = 16  # layer catalogues kept per model, one per input size asked for


@dataclass(frozen=True)
class Preprocessing:
    """How RGB pixels in [0, 1] become the network's input."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"  # or "BGR"; mean/std are given in this order
    scale: float = 1.0  # 255.0 for networks trained on 0-255 pixels

    def as_dict(self) -> dict:
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "channel_order": self.channel_order,
            "scale": self.scale,
            "input_space": "RGB in [0, 1]",
        }


class Normalize(nn.Module):
    """RGB [0, 1] -> the network's input space (differentiable)."""

    def __init__(self, pre: Preprocessing):
        super().__init__()
        self.bgr = pre.channel_order == "BGR"
        self.register_buffer("mean", torch.tensor(pre.mean).view(1, 3, 1, 1) / pre.scale)
        self.register_buffer("std", torch.tensor(pre.std).view(1, 3, 1, 1) / pre.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class LayerInfo:
    name: str
    type: str
    shape: tuple[int, ...]  # (channels, height, width), or (features,) for vectors, at the catalogue's input size
    leaf: bool = True  # a module with no submodules (its output is memory of its own)
    weight: tuple[int, ...] | None = None  # a convolution's weight shape

    @property
    def channels(self) -> int:
        return self.shape[0]

    def as_dict(self) -> dict:
        described = {"name": self.name, "type": self.type, "shape": list(self.shape), "channels": self.channels, "leaf": self.leaf}
        return described | ({"weight_shape": list(self.weight)} if self.weight else {})

    @classmethod
    def from_dict(cls, raw: dict) -> "LayerInfo":
        weight = raw.get("weight_shape")
        return cls(raw["name"], raw["type"], tuple(raw["shape"]), raw.get("leaf", True), tuple(weight) if weight else None)


class ConvLensModel(nn.Module):
    """A network from the zoo, in eval mode, with its preprocessing in front.

    One instance is shared by concurrent calls: nothing here or in a method
    changes it (hooks fire only for the thread that registered them, see
    :mod:`engine.concurrency`).

    ``layers`` maps every named submodule of the network to the module, built
    once: the network is never changed after loading, and walking
    ``named_modules()`` on every lookup showed up in profiles.
    """

    def __init__(self, spec: "ModelSpec", net: nn.Module):
        super().__init__()
        self.spec = spec
        self.normalize = Normalize(spec.preprocessing)
        self.net = net
        self._layers = {name: module for name, module in net.named_modules() if name}
        self._catalogue_lock = threading.Lock()
        self._catalogues: OrderedDict[tuple[int, int], tuple[LayerInfo, ...]] = OrderedDict()
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    @property
    def device(self) -> torch.device:
        return self.normalize.mean.device  # a network may have no parameters of its own; the preprocessing always has buffers

    @property
    def labels(self) -> tuple[str, ...] | None:
        return self.spec.labels

    @property
    def input_size(self) -> tuple[int, int]:
        return self.spec.input_size

    def mean_colour(self) -> torch.Tensor:
        """The training set's mean colour as RGB in [0, 1], shape (1, 3, 1, 1), on the model's device.

        It is the zero of the network's centred input: Simonyan et al.'s "zero image", the
        occlusion fill, the "mean" baseline, and the colour Yosinski et al.'s clipping resets pixels to.
        """
        mean = self.normalize.mean
        return (mean.flip(1) if self.normalize.bgr else mean).clone()
    def fit_input(self, image: Image.Image, fit: Fit | None = None, size: tuple[int, int] | None = None) -> Image.Image:
        """``image`` at ``size`` (default: the model's input size), fitted by ``fit`` or, when None, as the model's own
        evaluation fits it; ``pad`` letterboxes in the model's mean color."""
        fill = tuple(round(c * 255) for c in self.mean_colour().flatten().tolist())
        return fit_image(image, tuple(size or self.input_size), fit or self.spec.eval_fit, fill)

    # -- layers ---------------------------------------------------------------------------

    @property
    def layers(self) -> Mapping[str, nn.Module]:
        """Every named submodule of the network, by name (read-only)."""
        return MappingProxyType(self._layers)

    def layer(self, name: str) -> nn.Module:
        """The module called ``name`` (as listed in the layer catalogue)."""
        module = self._layers.get(name)
        if module is None:
            hint = ", ".join(info.name for info in self.catalogue()[:8])
            raise UnknownLayer(f"model {self.spec.name!r} has no layer {name!r}; e.g. {hint} (see GET /v1/models/{self.spec.name})")
        return module

    def catalogue(self, size: tuple[int, int] | None = None) -> tuple[LayerInfo, ...]:
        """Every module whose output is a feature map or vector, in order of completion, with its shape.

        The last ``CATALOGUE_SIZES`` sizes asked for are kept (least recently used dropped first).
        """
        size = tuple(size or self.input_size)
        with self._catalogue_lock:
            if size in self._catalogues:
                self._catalogues.move_to_end(size)
                return self._catalogues[size]
        found = self._trace_shapes(size)
        with self._catalogue_lock:
            self._catalogues[size] = found
            while len(self._catalogues) > CATALOGUE_SIZES:
                self._catalogues.popitem(last=False)
        return found

    def _trace_shapes(self, size: tuple[int, int]) -> tuple[LayerInfo, ...]:
        found: dict[str, LayerInfo] = {}
        handles = []

        def watch(name: str, module: nn.Module):
            def hook(_module, _inputs, output):
                if isinstance(output, torch.Tensor) and output.dim() in (2, 4) and name not in found:
                    leaf = next(module.children(), None) is None
                    weight = tuple(module.weight.shape) if isinstance(module, nn.Conv2d) else None
                    found[name] = LayerInfo(name, type(module).__name__, tuple(output.shape[1:]), leaf, weight)

            return hook

        with GATE.shared():
            try:
                for name, module in self._layers.items():
                    handles.append(module.register_forward_hook(this_thread_only(watch(name, module))))
                with torch.inference_mode():
                    self(torch.zeros(1, 3, *size, device=self.device))
            finally:
                for h in handles:
                    h.remove()
        return tuple(found.values())

    def layer_info(self, name: str, size: tuple[int, int] | None = None) -> LayerInfo:
        self.layer(name)
        for info in self.catalogue(size):
            if info.name == name:
                return info
        raise UnknownLayer(f"layer {name!r} of model {self.spec.name!r} outputs no feature map or vector")

    def check_channel(self, layer: str, channel: int, size: tuple[int, int] | None = None) -> None:
        units.check_channel(self.layer_info(layer, size), channel)

    def first_conv(self) -> str:
        return self.spec.first_conv

    # -- classes --------------------------------------------------------------------------

    def class_index(self, target: int | str) -> int:
        """Resolve a class given as an index or an (exact, case-insensitive) label (:func:`engine.models.units.class_index`)."""
        return units.class_index(self.spec.name, self.labels, target)

    def class_entry(self, index: int, probabilities: torch.Tensor, logits: torch.Tensor | None = None) -> dict:
        """How every answer names a class: index, label and probability (and the logit, as score, when given)."""
        entry = {"index": int(index), "label": self.labels[int(index)], "probability": float(probabilities[index])}
        return entry if logits is None else {**entry, "score": float(logits[index])}

    def top_classes(self, probabilities: torch.Tensor, k: int) -> list[dict]:
        """The ``k`` most probable classes of one picture's probabilities, most probable first."""
        probabilities = probabilities.cpu()  # read back once: each entry reads its probability
        return [self.class_entry(i, probabilities) for i in probabilities.topk(min(k, probabilities.numel())).indices.tolist()]
