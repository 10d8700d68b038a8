"""Which operations keep picture positions apart, and where the rows and columns go through them.

A batch of occluded activations keeps its copies on dim 0 and its picture
positions on two dims, the rows and the columns: dims 2 and 3 for NCHW, 1 and
2 after ConvNeXt's permute to channels-last. An operation is *local* when
every output position depends on the same input position only (convolutions
and pooling, which read a window around it, are handled by the caller). Then
the operation gives the same values on a box cut out of the tensor as on the
whole tensor, and the occluded values can be recomputed on the box alone.

:func:`local_layout` tells, for one traced node, whether it is local and the
:class:`Layout` of its output. It knows elementwise operations (activations,
arithmetic with operands that do not vary over positions), normalisations and
linear layers over a non-spatial axis (LayerNorm, MatMul after a permute),
reductions and softmax over such an axis, permutes, reshapes that keep the
batch and each spatial axis as a dim of its own (channel shuffles), channel
slices, chunks and concatenations. Anything else is not local.
"""

import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from engine.models.onnx_fixes import onnx_reshape, onnx_slice


@dataclass(frozen=True)
class Layout:
    """A batched activation of ``rank`` dims: copies on dim 0, picture rows and columns on dims ``axes``."""

    rank: int
    axes: tuple[int, int]

    def keeps_apart(self, dims) -> bool:
        """Whether an operation mixing values along ``dims`` leaves copies and positions apart."""
        return not {d % self.rank for d in dims} & {0, *self.axes}


NCHW = Layout(4, (2, 3))

# how a local node runs on a box: its own call on the boxed operands, or a reshape to the boxed output shape
CALL, RESHAPE, WINDOW = "call", "reshape", "window"

_ELEMENTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.Hardswish,
    nn.Hardsigmoid, nn.ELU, nn.Mish, nn.Softplus, nn.Identity, nn.Dropout, nn.Dropout2d,
)
_ELEMENTWISE_FUNCTIONS = {
    F.relu, F.relu_, F.relu6, F.hardtanh, F.leaky_relu, F.silu, F.gelu, F.hardswish, F.hardsigmoid, F.elu, F.mish,
    F.softplus, F.dropout, torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, torch.clip, torch.clamp_min,
    torch.erf, torch.sqrt, torch.rsqrt, torch.exp, torch.log, torch.abs, torch.reciprocal, torch.neg, torch.pow,
    torch.add, torch.sub, torch.mul, torch.div, torch.true_divide, torch.maximum, torch.minimum, torch.where,
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow,
}
_ELEMENTWISE_METHODS = {
    "relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_", "clamp_min", "clip", "contiguous", "neg", "add", "sub",
    "mul", "div", "add_", "mul_", "pow", "sqrt", "rsqrt", "exp", "erf", "abs", "float", "to", "clone",
}
_REDUCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin}
_REDUCTION_METHODS = {"mean", "sum", "amax", "amin"}
_SOFTMAX = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}
_RESHAPES = {torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze, onnx_reshape}
_RESHAPE_METHODS = {"reshape", "view", "flatten", "squeeze", "unsqueeze", "unflatten"}
_SPLITS = {torch.chunk, torch.split, torch.tensor_split}
_SPLIT_METHODS = {"chunk", "split", "tensor_split"}


def arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _dims(value) -> list[int] | None:
    if isinstance(value, int):
        return [value]
    if isinstance(value, (list, tuple, torch.Size)) and all(isinstance(d, int) for d in value):
        return list(value)
    return None


def local_layout(
    node: fx.Node,
    root: nn.Module,
    layouts: dict[fx.Node, Layout],
    value: Callable[[object], object],
    reshaped: Callable[[fx.Node, fx.Node], tuple[torch.Size, torch.Size]],
) -> tuple[Layout, str] | None:
    """(the output layout, how to run it on a box) when ``node`` is local, else None.

    ``layouts``: the node's local inputs (every other input does not depend on the picture, or only
    on its shape); ``value(arg)``: an argument's clean value; ``reshaped(node, source)``: the shapes
    of ``source`` and of the node's output when the batch holds two copies.
    """
    first = node.all_input_nodes[0] if node.all_input_nodes else None
    source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else first
    if node.op == "call_module":
        return _module_layout(root.get_submodule(node.target), layouts.get(source))
    target = node.target
    layout = layouts.get(source)
    if target in _ELEMENTWISE_FUNCTIONS or (node.op == "call_method" and target in _ELEMENTWISE_METHODS):
        return _elementwise(node, layouts, value)
    if node.op == "call_method" and target == "flip":
        dims = _dims(list(node.args[1:]) if len(node.args) > 2 else arg(node, 1, "dims"))
        return (layout, CALL) if layout and dims is not None and layout.keeps_apart(dims) else None
    if target is F.batch_norm:
        training = arg(node, 5, "training", False)
        return (layout, CALL) if layout and not training and layout.keeps_apart([1]) else None
    if target is F.layer_norm:
        count = len(value(arg(node, 1, "normalized_shape")))
        return _normalised_last(layout, count)
    if target in (torch.matmul, operator.matmul) or (node.op == "call_method" and target == "matmul"):
        return _matmul(node, layouts, value)
    if target is F.linear:
        return _normalised_last(layout, 1) if source in layouts and len(layouts) == 1 else None
    if target in _REDUCTIONS or (node.op == "call_method" and target in _REDUCTION_METHODS):
        return _reduction(node, layout, value)
    if target in _SOFTMAX or (node.op == "call_method" and target in ("softmax", "log_softmax")):
        dim = value(arg(node, 1, "dim"))
        return (layout, CALL) if layout and isinstance(dim, int) and layout.keeps_apart([dim]) else None
    if target is torch.permute or (node.op == "call_method" and target in ("permute", "transpose", "swapaxes")) or target is torch.transpose:
        return _permuted(node, layout, value)
    if target in _RESHAPES or (node.op == "call_method" and target in _RESHAPE_METHODS):
        return _reshape(node, source, layout, reshaped)
    if target in _SPLITS or (node.op == "call_method" and target in _SPLIT_METHODS):
        dim = value(arg(node, 2, "dim", 0))
        return (layout, CALL) if layout and isinstance(dim, int) and layout.keeps_apart([dim]) else None
    if target is onnx_slice:
        return _onnx_sliced(node, layout, value)
    if target is operator.getitem:
        return _indexed(node, layout, value)
    if target in (torch.cat, torch.concat, torch.concatenate):
        return _concatenated(node, layouts, value)
    return None


def _module_layout(module: nn.Module, layout: Layout | None) -> tuple[Layout, str] | None:
    if layout is None:
        return None
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        return (layout, WINDOW) if layout == NCHW else None
    if isinstance(module, _ELEMENTWISE_MODULES):
        return layout, CALL
    if isinstance(module, (nn.BatchNorm2d, nn.PReLU)):  # per channel, channels on dim 1
        return (layout, CALL) if layout.keeps_apart([1]) else None
    if isinstance(module, nn.LayerNorm):
        return _normalised_last(layout, len(module.normalized_shape))
    if isinstance(module, nn.Linear):
        return _normalised_last(layout, 1)
    if isinstance(module, (nn.Softmax, nn.LogSoftmax)):
        return (layout, CALL) if module.dim is not None and layout.keeps_apart([module.dim]) else None
    return None


def _normalised_last(layout: Layout | None, count: int) -> tuple[Layout, str] | None:
    """LayerNorm over, or a linear layer on, the last ``count`` dims."""
    if layout is None or not layout.keeps_apart(range(layout.rank - count, layout.rank)):
        return None
    return layout, CALL


def _elementwise(node: fx.Node, layouts: dict[fx.Node, Layout], value) -> tuple[Layout, str] | None:
    """Elementwise with broadcasting: local operands share one layout and are not broadcast over copies or
    positions; the other operands do not vary over copies or positions."""
    if node.target is F.dropout and arg(node, 2, "training", True):
        return None
    out = value(node)
    found = set(layouts.values())
    if len(found) != 1 or not isinstance(out, torch.Tensor):
        return None
    (layout,) = found
    if out.dim() != layout.rank:
        return None
    for n in node.all_input_nodes:
        v = value(n)
        if n in layouts:
            if any(v.shape[d] != out.shape[d] for d in (0, *layout.axes)):
                return None
        elif isinstance(v, torch.Tensor):
            offset = layout.rank - v.dim()
            if offset < 0 or any(d - offset >= 0 and v.shape[d - offset] != 1 for d in (0, *layout.axes)):
                return None
    return layout, CALL


def _matmul(node: fx.Node, layouts: dict[fx.Node, Layout], value) -> tuple[Layout, str] | None:
    """A local operand times a constant matrix: a linear map of one non-spatial axis."""
    left, right = node.args[0], node.args[1]
    if len(layouts) != 1 or left is right:
        return None
    local = left if left in layouts else right
    other = value(right if local is left else left)
    if not isinstance(other, torch.Tensor) or other.dim() != 2:
        return None
    layout = layouts[local]
    return (layout, CALL) if layout.keeps_apart([-1 if local is left else -2]) else None


def _reduction(node: fx.Node, layout: Layout | None, value) -> tuple[Layout, str] | None:
    dims = _dims(value(arg(node, 1, "dim")))
    if layout is None or not dims or not layout.keeps_apart(dims):
        return None
    if value(arg(node, 2, "keepdim", False)):
        return layout, CALL
    removed = {d % layout.rank for d in dims}
    rows, cols = (a - sum(d < a for d in removed) for a in layout.axes)
    return Layout(layout.rank - len(removed), (rows, cols)), CALL


def _permuted(node: fx.Node, layout: Layout | None, value) -> tuple[Layout, str] | None:
    if layout is None:
        return None
    rest = [value(a) for a in node.args[1:]]
    if node.target in ("transpose", "swapaxes") or node.target is torch.transpose:
        if len(rest) != 2:
            return None
        perm = list(range(layout.rank))
        a, b = (d % layout.rank for d in rest)
        perm[a], perm[b] = perm[b], perm[a]
    else:
        perm = _dims(rest[0] if len(rest) == 1 else rest) or _dims(value(node.kwargs.get("dims")))
        if perm is None:
            return None
        perm = [d % layout.rank for d in perm]
    if perm[0] != 0:
        return None
    return Layout(layout.rank, (perm.index(layout.axes[0]), perm.index(layout.axes[1]))), CALL


def _reshape(node: fx.Node, source, layout: Layout | None, reshaped) -> tuple[Layout, str] | None:
    if layout is None:
        return None
    try:
        before, after = reshaped(node, source)
    except (RuntimeError, NotImplementedError, TypeError):  # an operation without a meta-device kernel
        return None
    axes = reshaped_axes(before, after, layout.axes)
    return (Layout(len(after), axes), RESHAPE) if axes is not None else None


def reshaped_axes(before, after, axes: tuple[int, int]) -> tuple[int, int] | None:
    """Where dims ``axes`` of shape ``before`` land in ``after`` (a row-major reshape), when dim 0 and each of
    ``axes`` keeps a dim of its own there (0 on 0); None when the reshape merges or splits any of them.

    Dims of size 1 come and go freely; the other dims form groups of equal products, and a dim alone in
    its group on both sides is the same dim before and after.
    """
    kept_before = [d for d, s in enumerate(before) if s != 1]
    kept_after = [d for d, s in enumerate(after) if s != 1]
    same: dict[int, int] = {}
    i = j = 0
    while i < len(kept_before) and j < len(kept_after):
        group_before, group_after = [kept_before[i]], [kept_after[j]]
        size_before, size_after = before[kept_before[i]], after[kept_after[j]]
        i, j = i + 1, j + 1
        while size_before != size_after:
            if size_before < size_after and i < len(kept_before):
                group_before.append(kept_before[i])
                size_before, i = size_before * before[kept_before[i]], i + 1
            elif size_after < size_before and j < len(kept_after):
                group_after.append(kept_after[j])
                size_after, j = size_after * after[kept_after[j]], j + 1
            else:
                return None
        if len(group_before) == 1 and len(group_after) == 1:
            same[group_before[0]] = group_after[0]
    if same.get(0) != 0 or any(a not in same for a in axes):
        return None
    return same[axes[0]], same[axes[1]]


def _onnx_sliced(node: fx.Node, layout: Layout | None, value) -> tuple[Layout, str] | None:
    starts, axes = value(node.args[1]), value(arg(node, 3, "axes"))
    dims = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    return (layout, CALL) if layout and layout.keeps_apart(dims) else None


def _indexed(node: fx.Node, layout: Layout | None, value) -> tuple[Layout, str] | None:
    """An element of a local chunk/split, or a tensor sliced (``x[:, :c]``) along non-spatial dims."""
    source, index = node.args
    if layout is None:
        return None
    if isinstance(value(source), (tuple, list)):
        return layout, CALL
    index = index if isinstance(index, tuple) else (index,)
    if len(index) > layout.rank or not all(isinstance(i, slice) for i in index):
        return None
    changed = [d for d, i in enumerate(index) if i != slice(None)]
    return (layout, CALL) if layout.keeps_apart(changed) else None


def _concatenated(node: fx.Node, layouts: dict[fx.Node, Layout], value) -> tuple[Layout, str] | None:
    tensors, dim = node.args[0], value(arg(node, 1, "dim", 0))
    if not isinstance(tensors, (list, tuple)):
        return None
    found = {layouts.get(t) for t in tensors}
    if len(found) != 1 or None in found or not isinstance(dim, int):
        return None
    (layout,) = found
    return (layout, CALL) if layout.keeps_apart([dim]) else None
