"""The receptive field of a layer, computed analytically from its conv/pool chain.

Output position ``i`` of a layer sees input pixels ``[i*stride + offset,
i*stride + offset + size - 1]`` (per axis). Walking the convolutions and
poolings in the order they run, each with kernel ``k``, stride ``s``, padding
``p`` and dilation ``d``, composes as (Araujo et al. 2019, "Computing Receptive
Fields of Convolutional Neural Networks", https://distill.pub/2019/computing-receptive-fields/):

    size   += (d*(k-1)) * stride
    offset -= p * stride
    stride *= s

This is exact for chains (VGG19) and for networks whose shortcuts are
identities (EfficientNet's inverted residuals): every spatial operation then
lies on the one longest path. It is the theoretical field; the gradient of a
unit is nonzero on at most this box (the tests measure it).
"""

from dataclasses import dataclass

import torch
from torch import nn

from engine.hooks import capture, run_until, this_thread_only
from engine.models import ConvLensModel

SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class Axis:
    size: int = 1
    stride: int = 1
    offset: int = 0

    def then(self, kernel: int, stride: int, padding: int, dilation: int) -> "Axis":
        return Axis(
            size=self.size + dilation * (kernel - 1) * self.stride,
            stride=self.stride * stride,
            offset=self.offset - padding * self.stride,
        )

    def span(self, index: int) -> tuple[int, int]:
        """First and one-past-last input pixel seen by output ``index``."""
        start = index * self.stride + self.offset
        return start, start + self.size


@dataclass(frozen=True)
class ReceptiveField:
    rows: Axis
    cols: Axis

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in input pixels, right/bottom exclusive; may reach past the image."""
        top, bottom = self.rows.span(y)
        left, right = self.cols.span(x)
        return left, top, right, bottom

    def as_dict(self) -> dict:
        return {
            "size": [self.rows.size, self.cols.size],
            "stride": [self.rows.stride, self.cols.stride],
            "offset": [self.rows.offset, self.cols.offset],
        }


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _padding(padding, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """Padding before the first pixel; PyTorch's "same" puts the odd extra pixel after the last."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    return _pair(padding)


def receptive_field(model: ConvLensModel, layer: str, size: tuple[int, int]) -> ReceptiveField:
    """The receptive field of ``layer``'s output, in pixels of a ``size`` input."""
    target = model.layer(layer)
    order: list[nn.Module] = []
    handles = []
    try:
        for module in model.layers.values():
            if isinstance(module, SPATIAL):
                handles.append(module.register_forward_hook(this_thread_only(lambda m, _i, _o: order.append(m))))
        with torch.inference_mode(), capture({layer: target}, stop_early=True):
            run_until(model, torch.zeros(1, 3, *size, device=model.device))
    finally:
        for handle in handles:
            handle.remove()
    rows, cols = Axis(), Axis()
    for module in order:
        kernel, stride = _pair(module.kernel_size), _pair(module.stride)
        dilation = _pair(getattr(module, "dilation", 1))
        padding = _padding(module.padding, kernel, dilation)
        rows = rows.then(kernel[0], stride[0], padding[0], dilation[0])
        cols = cols.then(kernel[1], stride[1], padding[1], dilation[1])
    return ReceptiveField(rows, cols)
