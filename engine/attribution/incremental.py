"""Occlusion outputs recomputed only inside each window's receptive-field cone.

An occluding window changes a layer's activations only where that layer's
receptive field meets the window. The network is traced with ``torch.fx``;
one clean forward pass records every activation; then, for each occluded
picture, every spatially local operation (convolutions, pooling, batch norm,
activations, residual sums) is recomputed only on a box around the changed
region, read from the clean activation with the changed values pasted in.
Where the box reaches the image border the operation's own padding is
reproduced explicitly, so every recomputed value equals the brute-force one.
Once a box covers the whole feature map (or an operation is not local, such
as global pooling), the rest of the network runs on whole batched tensors.

Boxes have one size per node for all windows (the largest affected region,
shifted inside the map at the borders), so windows batch together. Each
occluded value is dropped after its last reader, as ``fx.Interpreter`` does: a
graph whose activations are not in place (an ONNX copy's ``ReLU6``) would
otherwise keep every batched activation alive to the end.
"""

import operator
import weakref
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from engine.concurrency import build_once

Window = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)

_POINTWISE_MODULES = (
    nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU,
    nn.Hardswish, nn.Hardsigmoid, nn.ELU, nn.Identity, nn.Dropout, nn.Dropout2d,
)
_POINTWISE_FUNCTIONS = {
    F.batch_norm, F.relu, F.relu_, F.relu6, F.hardtanh, F.leaky_relu, F.silu, F.gelu, F.hardswish, F.dropout,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, operator.neg,
}
_POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "tanh", "clamp", "clamp_", "clamp_min", "contiguous", "neg", "flip"}
_BINARY = {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div}
_BINARY_METHODS = {"add", "sub", "mul", "div", "add_", "mul_"}
_SHAPE_FREE_ATTRS = {"ndim", "dtype", "device", "is_cuda"}


@dataclass
class _Box:
    """Per axis: the affected interval of every window, and the fixed-size box computed around it."""

    lo: tuple[np.ndarray, np.ndarray]
    hi: tuple[np.ndarray, np.ndarray]
    size: tuple[int, int]
    start: tuple[np.ndarray, np.ndarray]

    @classmethod
    def around(cls, lo, hi, extent: tuple[int, int]) -> "_Box":
        size = tuple(int(min(extent[a], max(1, (hi[a] - lo[a]).max()))) for a in range(2))
        start = tuple(np.clip(lo[a], 0, extent[a] - size[a]) for a in range(2))
        return cls(tuple(lo), tuple(hi), size, start)

    def covers(self, extent: tuple[int, int]) -> bool:
        return self.size == tuple(extent)


@dataclass
class _Window:
    """A local operation with a sliding kernel, run on an explicitly padded region."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    pad_value: float
    fn: object  # region -> output, with no padding of its own

    def affected(self, lo: np.ndarray, hi: np.ndarray, axis: int, extent: int):
        k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        out_lo = np.maximum(0, -((-(lo + p - d * (k - 1))) // s))
        out_hi = np.minimum(extent, (hi - 1 + p) // s + 1)
        return out_lo, out_hi

    def span(self, size: int, axis: int) -> int:
        return (size - 1) * self.stride[axis] + self.dilation[axis] * (self.kernel[axis] - 1) + 1


def _window_op(node: fx.Node, root: nn.Module) -> _Window | None:
    if node.op != "call_module":
        return None
    m = root.get_submodule(node.target)
    if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not isinstance(m.padding, str):
        return _Window(
            m.kernel_size, m.stride, m.padding, m.dilation, 0.0,
            lambda r, m=m: F.conv2d(r, m.weight, m.bias, m.stride, 0, m.dilation, m.groups),
        )
    if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and not m.return_indices:
        k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
        return _Window(k, s, _pair(m.padding), _pair(m.dilation), float("-inf"),
                       lambda r, k=k, s=s, m=m: F.max_pool2d(r, k, s, 0, _pair(m.dilation)))
    if (
        isinstance(m, nn.AvgPool2d)
        and not m.ceil_mode
        and m.divisor_override is None
        and (m.count_include_pad or _pair(m.padding) == (0, 0))
    ):
        k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
        return _Window(k, s, _pair(m.padding), (1, 1), 0.0, lambda r, k=k, s=s: F.avg_pool2d(r, k, s, 0))
    return None


def _is_pointwise(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_module":
        return isinstance(root.get_submodule(node.target), _POINTWISE_MODULES)
    if node.op == "call_function" and node.target in _POINTWISE_FUNCTIONS:
        if node.target is F.batch_norm:
            return not (node.args[5] if len(node.args) > 5 else node.kwargs.get("training", False))
        if node.target is F.dropout:
            return not (node.args[2] if len(node.args) > 2 else node.kwargs.get("training", True))
        return True
    if node.op == "call_method" and node.target in _POINTWISE_METHODS:
        if node.target == "flip":
            dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dims")
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            return all(d in (0, 1, -3, -4) for d in dims)
        return True
    return _is_binary(node)


def _is_binary(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _BINARY) or (
        node.op == "call_method" and node.target in _BINARY_METHODS
    )


def _is_inplace(node: fx.Node, root: nn.Module) -> bool:
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(node.target), "inplace", False))
    if node.op == "call_function":
        return node.target in (F.relu_, torch.relu_) or bool(node.kwargs.get("inplace", False))
    return node.op == "call_method" and str(node.target).endswith("_")


class Unsupported(Exception):
    """The network cannot be split into local operations; use brute force."""


class IncrementalOcclusion:
    """Outputs of ``model`` for many occluded copies of one picture, recomputing only what changes."""

    def __init__(self, model: nn.Module, image: torch.Tensor, windows: list[Window]):
        self.gm = traced(model)
        self.windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
        self.image = image
        self.clean = self._clean_pass(image)
        self.plan: dict[fx.Node, tuple] = {}
        self._padded: dict[tuple, torch.Tensor] = {}
        self._make_plan()
        self._last_uses = _last_uses(self.gm.graph)

    # -- planning ---------------------------------------------------------------------------

    def _clean_pass(self, image: torch.Tensor) -> dict[fx.Node, object]:
        values: dict[fx.Node, object] = {}

        class Recorder(fx.Interpreter):
            def run_node(inner, n):
                values[n] = result = super().run_node(n)
                return result

        Recorder(self.gm).run(image)
        return values

    def _make_plan(self) -> None:
        root = self.gm
        for node in self.gm.graph.nodes:
            if node.op == "output":
                continue
            if _is_inplace(node, root) and node.all_input_nodes:
                source = node.all_input_nodes[0]
                if any(u is not node for u in source.users):
                    raise Unsupported(f"in-place {node.format_node()} aliases a tensor read elsewhere")
            self.plan[node] = self._classify(node, root)

    def _classify(self, node: fx.Node, root: nn.Module) -> tuple:
        if node.op == "placeholder":
            w = self.windows
            extent = self.image.shape[-2:]
            return ("local", _Box.around((w[:, 0], w[:, 2]), (w[:, 1], w[:, 3]), tuple(extent)))
        inputs = node.all_input_nodes
        kinds = [self.plan[n][0] for n in inputs]
        if all(k == "const" for k in kinds):
            return ("const",)
        if node.op == "call_function" and node.target is getattr and node.args[1] in _SHAPE_FREE_ATTRS:
            return ("const",)
        value = self.clean[node]
        spatial = isinstance(value, torch.Tensor) and value.dim() == 4
        if "full" in kinds or not spatial:
            return ("full",)
        extent = tuple(value.shape[-2:])
        locals_ = [n for n in inputs if self.plan[n][0] == "local"]
        window = _window_op(node, root)
        if window is not None:
            box_in = self.plan[locals_[0]][1]
            lo, hi = zip(*(window.affected(box_in.lo[a], box_in.hi[a], a, extent[a]) for a in range(2)))
            if any((h <= l).any() for l, h in zip(lo, hi)):
                return ("full",)
            return self._local(("window", window), lo, hi, extent)
        if not _is_pointwise(node, root) or not self._trivial_constants(node):
            return ("full",)
        if len(locals_) == 1:
            return ("local", self.plan[locals_[0]][1], ("pointwise",))
        if len(locals_) == 2 and _is_binary(node) and all(self.clean[n].shape == value.shape for n in locals_):
            boxes = [self.plan[n][1] for n in locals_]
            lo = tuple(np.minimum(boxes[0].lo[a], boxes[1].lo[a]) for a in range(2))
            hi = tuple(np.maximum(boxes[0].hi[a], boxes[1].hi[a]) for a in range(2))
            return self._local(("merge",), lo, hi, extent)
        return ("full",)

    def _local(self, how: tuple, lo, hi, extent) -> tuple:
        box = _Box.around(lo, hi, extent)
        return ("full", how, box) if box.covers(extent) else ("local", box, how)

    def _trivial_constants(self, node: fx.Node) -> bool:
        """Constant tensor operands must not vary over positions (per-channel scales, biases...)."""
        for n in node.all_input_nodes:
            v = self.clean[n]
            if self.plan[n][0] == "const" and isinstance(v, torch.Tensor) and v.dim() >= 3:
                if v.shape[-1] > 1 or v.shape[-2] > 1:
                    return False
        return True

    # -- running ------------------------------------------------------------------------------

    def outputs(self, chosen: np.ndarray, fill: torch.Tensor) -> torch.Tensor:
        """The network's output for the occluded pictures ``windows[chosen]`` (window filled with ``fill``)."""
        env: dict[fx.Node, tuple] = {}
        for node in self.gm.graph.nodes:
            if node.op == "output":
                result = fx.node.map_arg(node.args[0], lambda n: self._full(env[n], n, chosen))
                return result
            plan = self.plan[node]
            if plan[0] == "const":
                env[node] = ("const", self.clean[node])
            elif node.op == "placeholder":
                env[node] = self._occluded_source(plan[1], chosen, fill)
            elif plan[0] == "local":
                env[node] = ("local", self._run_local(node, plan[2], plan[1], env, chosen))
            elif len(plan) == 3:  # a local operation whose box covers the map
                env[node] = ("full", self._run_local(node, plan[1], plan[2], env, chosen))
            else:
                args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: self._full(env[n], n, chosen))
                env[node] = ("full", self._call(node, args, kwargs))
            for done in self._last_uses[node]:  # freed buffers are reused by the next allocations
                del env[done]
        raise RuntimeError("graph without output")

    def _call(self, node: fx.Node, args, kwargs):
        if node.op == "call_module":
            return self.gm.get_submodule(node.target)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        raise RuntimeError(f"cannot run {node.format_node()}")

    def _occluded_source(self, box: _Box, chosen: np.ndarray, fill: torch.Tensor) -> tuple:
        (h, w), (sy, sx) = box.size, (box.start[0][chosen], box.start[1][chosen])
        patch = torch.empty((len(chosen), self.image.shape[1], h, w), dtype=self.image.dtype, device=self.image.device)
        for i, k in enumerate(chosen):
            y0, y1, x0, x1 = self.windows[k]
            patch[i] = self.image[0, :, sy[i] : sy[i] + h, sx[i] : sx[i] + w]
            patch[i, :, y0 - sy[i] : y1 - sy[i], x0 - sx[i] : x1 - sx[i]] = fill[0]
        return ("local", patch)

    def _full(self, entry: tuple, node: fx.Node, chosen: np.ndarray):
        kind, value = entry
        if kind != "local":
            return value
        box = self.plan[node][1]
        clean = self.clean[node]
        full = clean.repeat(len(chosen), 1, 1, 1)
        self._paste(full, value, box, chosen, (np.zeros(len(chosen), np.int64),) * 2)
        return full

    def _paste(self, target: torch.Tensor, patch: torch.Tensor, box: _Box, chosen: np.ndarray, origin) -> None:
        """Write ``patch`` (box coordinates) into ``target`` whose [0, 0] sits at ``origin[i]`` per window."""
        (h, w), th, tw = box.size, *target.shape[-2:]
        rows = (box.start[0][chosen] - origin[0])[:, None] + np.arange(h)
        cols = (box.start[1][chosen] - origin[1])[:, None] + np.arange(w)
        inside = ((rows >= 0) & (rows < th))[:, :, None] & ((cols >= 0) & (cols < tw))[:, None, :]
        n, py, px = (torch.from_numpy(i).to(target.device) for i in np.nonzero(inside))
        ty = torch.from_numpy(rows).to(target.device)[n, py]
        tx = torch.from_numpy(cols).to(target.device)[n, px]
        target[n, :, ty, tx] = patch[n, :, py, px]

    def _region(self, source: fx.Node, entry: tuple, chosen, start, size, pad, pad_value) -> torch.Tensor:
        """Rows/cols [start, start + size) of ``source``'s occluded value, padded with ``pad_value`` outside the map."""
        kind, value = entry
        box = self.plan[source][1] if kind == "local" else None
        if kind == "local" and pad == (0, 0) and box.size == size:
            if (box.start[0][chosen] == start[0]).all() and (box.start[1][chosen] == start[1]).all():
                return value
        clean = self.clean[source]
        key = (source, pad, pad_value)
        if key not in self._padded:
            self._padded[key] = F.pad(clean, (pad[1], pad[1], pad[0], pad[0]), value=pad_value)[0]
        padded = self._padded[key]
        rows = torch.from_numpy((start[0] + pad[0])[:, None] + np.arange(size[0])).to(clean.device)
        cols = torch.from_numpy((start[1] + pad[1])[:, None] + np.arange(size[1])).to(clean.device)
        region = padded[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1)  # one gather for the batch
        if kind == "local":
            self._paste(region, value, box, chosen, start)
        return region

    def _run_local(self, node: fx.Node, how: tuple, box: _Box, env, chosen: np.ndarray) -> torch.Tensor:
        start = (box.start[0][chosen], box.start[1][chosen])
        if how[0] == "window":
            window: _Window = how[1]
            source = node.all_input_nodes[0]
            region_start = tuple(start[a] * window.stride[a] - window.padding[a] for a in range(2))
            size = tuple(window.span(box.size[a], a) for a in range(2))
            region = self._region(source, env[source], chosen, region_start, size, window.padding, window.pad_value)
            return window.fn(region)
        if how[0] == "merge":
            operands = {n: self._region(n, env[n], chosen, start, box.size, (0, 0), 0.0) for n in node.all_input_nodes}
        else:
            operands = {n: env[n][1] for n in node.all_input_nodes}
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: operands[n])
        return self._call(node, args, kwargs)


def _last_uses(graph: fx.Graph) -> dict[fx.Node, list[fx.Node]]:
    """For each node, the inputs that no later node reads (as ``fx.Interpreter`` frees them)."""
    seen: set[fx.Node] = set()
    last: dict[fx.Node, list[fx.Node]] = {}
    for node in reversed(graph.nodes):
        last[node] = [n for n in node.all_input_nodes if n not in seen]
        seen.update(node.all_input_nodes)
    return last


_TRACES: "weakref.WeakKeyDictionary[nn.Module, fx.GraphModule | Unsupported]" = weakref.WeakKeyDictionary()


def traced(model: nn.Module) -> fx.GraphModule:
    """The cached fx trace of ``model`` (shares its weights); raises Unsupported if it cannot be traced."""
    def build() -> fx.GraphModule | Unsupported:
        try:
            return fx.symbolic_trace(model)
        except Exception as exc:  # fx raises many types for untraceable control flow
            return Unsupported(f"cannot trace the model: {exc}")

    found = build_once(_TRACES, model, build)
    if isinstance(found, Unsupported):
        raise found
    return found
