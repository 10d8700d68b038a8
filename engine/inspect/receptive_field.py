"""The receptive field of a layer, followed through every operation its input passes.

Output position ``i`` of a layer sees input pixels ``[i*stride + offset,
i*stride + offset + size - 1]`` (per axis). Each convolution or pooling with
kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` composes as
(Araujo et al. 2019, "Computing Receptive Fields of Convolutional Neural
Networks", https://distill.pub/2019/computing-receptive-fields/):

    size   += (d*(k-1)) * stride
    offset -= p * stride
    stride *= s

One forward pass on a blank picture, under a torch function mode, gives every
tensor the field of its positions: convolutions, poolings and explicit pads
compose it; any other operation whose output keeps its inputs' map (elementwise
ops, residual sums, channel concatenations and shuffles, permutes to channels
last) takes the union of its inputs' fields, as paths that meet do (ResNet's
shortcuts, Inception's branches). A 1 x 1 map (a squeeze-and-excitation gate,
global pooling) carries no position, so it adds nothing where it meets a map;
a layer whose map comes from resampling sees the whole picture. It is the
theoretical field; the gradient of a unit is nonzero on at most this box (the
tests measure it).
"""

from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode

from engine.hooks import capture, run_until
from engine.models import ConvLensModel


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


def _union(a: Axis, b: Axis) -> Axis | None:
    if a.stride != b.stride:
        return None  # maps on different grids: no one box per position
    offset = min(a.offset, b.offset)
    return Axis(max(a.offset + a.size, b.offset + b.size) - offset, a.stride, offset)


@dataclass(frozen=True)
class _Field:
    rows: Axis
    cols: Axis
    extent: tuple[int, int]  # the map's height and width

    def then(self, kernel, stride, padding, dilation, extent) -> "_Field":
        kernel, stride, dilation = _pair(kernel), _pair(stride), _pair(dilation)
        padding = _padding(padding, kernel, dilation)
        return _Field(self.rows.then(kernel[0], stride[0], padding[0], dilation[0]),
                      self.cols.then(kernel[1], stride[1], padding[1], dilation[1]), extent)

    def padded(self, top: int, left: int, extent) -> "_Field":
        return _Field(Axis(self.rows.size, self.rows.stride, self.rows.offset - top * self.rows.stride),
                      Axis(self.cols.size, self.cols.stride, self.cols.offset - left * self.cols.stride), extent)

    def kept_by(self, shape: torch.Size) -> bool:
        """Whether a tensor of ``shape`` still lays out this map (its height and width, side by side)."""
        return self.extent != (1, 1) and any(tuple(shape[i : i + 2]) == self.extent for i in range(len(shape) - 1))


_ARGUMENTS = {  # positional parameters after the input, as the functional forms take them
    "conv2d": ("weight", "bias", "stride", "padding", "dilation"),
    "max_pool2d": ("kernel_size", "stride", "padding", "dilation"),
    "_max_pool2d": ("kernel_size", "stride", "padding", "dilation"),
    "max_pool2d_with_indices": ("kernel_size", "stride", "padding", "dilation"),
    "avg_pool2d": ("kernel_size", "stride", "padding"),
}


class _Tracker(TorchFunctionMode):
    """Gives each tensor made during a forward pass the field of its positions (by identity; the tensors are kept
    alive meanwhile, so no identity is reused)."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.fields: dict[int, _Field] = {id(image): _Field(Axis(), Axis(), tuple(image.shape[-2:]))}
        self.alive: list = [image]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs = [t for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)]
        if not outputs:
            return out
        name = getattr(func, "__name__", "")
        first = args[0] if args else None
        found = self.fields.get(id(first)) if isinstance(first, torch.Tensor) else None
        if name in _ARGUMENTS or name == "pad":
            extent = tuple(outputs[0].shape[-2:])
            if found is None:
                field = None
            elif name == "pad":
                pad = args[1] if len(args) > 1 else kwargs["pad"]
                field = found.padded(pad[2] if len(pad) > 2 else 0, pad[0], extent)
            else:
                given = dict(zip(_ARGUMENTS[name], args[1:]), **kwargs)
                kernel = given["weight"].shape[-2:] if name == "conv2d" else given["kernel_size"]
                field = found.then(kernel, given.get("stride") or (1 if name == "conv2d" else kernel),
                                   given.get("padding", 0), given.get("dilation", 1), extent)
            self._keep(outputs[:1], field)
            return out
        fields = [self.fields[id(t)] for t in _tensors(args, kwargs) if id(t) in self.fields]
        fields = [f for f in fields if f.kept_by(outputs[0].shape)]
        field = fields[0] if fields else None
        for other in fields[1:]:
            rows, cols = _union(field.rows, other.rows), _union(field.cols, other.cols)
            field = None if rows is None or cols is None or field.extent != other.extent else _Field(rows, cols, field.extent)
            if field is None:
                break
        self._keep([t for t in outputs if field is not None and field.kept_by(t.shape)], field)
        return out

    def _keep(self, tensors, field: "_Field | None") -> None:
        for t in tensors:
            self.alive.append(t)
            if field is None:
                self.fields.pop(id(t), None)
            else:
                self.fields[id(t)] = field


def _tensors(args, kwargs):
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (tuple, list)):
            yield from (v for v in value if isinstance(v, torch.Tensor))


def receptive_field(model: ConvLensModel, layer: str, size: tuple[int, int]) -> ReceptiveField:
    """The receptive field of ``layer``'s output, in pixels of a ``size`` input (the whole picture for every
    position when its map was resampled)."""
    image = torch.zeros(1, 3, *size, device=model.device)
    tracker = _Tracker(image)
    with torch.inference_mode(), capture({layer: model.layer(layer)}, stop_early=True) as outputs:
        with tracker:
            run_until(model, image)
    field = tracker.fields.get(id(outputs[layer]))
    if field is None:
        return ReceptiveField(Axis(size[0], 0, 0), Axis(size[1], 0, 0))
    return ReceptiveField(field.rows, field.cols)
