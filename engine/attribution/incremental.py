"""Occlusion outputs recomputed only inside each window's receptive-field cone.

An occluding window changes a layer's activations only where that layer's
receptive field meets the window. The network is traced with ``torch.fx``;
one clean forward pass records every activation; then, for each occluded
picture, every spatially local operation (convolutions and pooling, and the
position-wise operations of :mod:`engine.attribution.spatial_layout`:
activations, sums, LayerNorm and linear layers over channels, permutes,
channel shuffles, splits and concatenations) is recomputed only on a box
around the changed region, read from the clean activation with the changed
values pasted in. Where the box reaches the image border a convolution's or
pooling's own padding is reproduced explicitly, so every recomputed value
equals the brute-force one. Once a box covers the whole feature map (or an
operation is not local, such as global pooling), the rest of the network runs
on whole batched tensors.

Values computed from activations' shapes only (an ONNX graph's
``Shape -> Gather -> Concat`` feeding a ``Reshape``) are recomputed for each
batch from the whole tensors' shapes, as brute force would see them.

Boxes have one size per node for all windows (the largest affected region,
shifted inside the map at the borders), so windows batch together. Each
occluded value is dropped after its last reader, as ``fx.Interpreter`` does: a
graph whose activations are not in place (an ONNX copy's ``ReLU6``) would
otherwise keep every batched activation alive to the end.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from engine.fx_nodes import overwrites_input
from engine.attribution.occlusion_trace import Unsupported, traced
from engine.attribution.spatial_layout import NCHW, RESHAPE, WINDOW, Layout, local_layout
from engine.models.onnx_fixes import onnx_shape

Window = tuple[int, int, int, int]  # y0, y1, x0, x1 (end exclusive)

CONST, META, LOCAL, FULL = "const", "meta", "local", "full"
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


def _window_op(m: nn.Module) -> _Window | None:
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


@dataclass
class _Step:
    """How one node runs for a batch of occluded pictures.

    ``const``: the clean value (the node does not depend on the picture); ``meta``: recomputed from the
    shapes of whole tensors; ``local``: computed on ``box`` only, laid out as ``layout``; ``full``: whole
    tensors. A ``full`` step with a ``how`` is a local operation whose box covers the map.
    """

    kind: str
    box: _Box | None = None
    layout: Layout | None = None
    how: str | None = None  # CALL, RESHAPE or WINDOW
    window: _Window | None = None
    shape: torch.Size | None = None  # RESHAPE: the output shape for a batch of two


def _format(t: torch.Tensor) -> torch.memory_format:
    """The memory format a batch of ``t``'s copies keeps (channels-last where ``t`` is laid out so)."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _reads_shape(node: fx.Node) -> bool:
    """Whether ``node`` reads only the shape of its tensor input (which varies with the batch)."""
    if node.op == "call_function":
        return node.target is onnx_shape or (node.target is getattr and node.args[1] == "shape")
    return node.op == "call_method" and node.target == "size"


class IncrementalOcclusion:
    """Outputs of ``model`` for many occluded copies of one picture, recomputing only what changes."""

    def __init__(self, model: nn.Module, image: torch.Tensor, windows: list[Window]):
        self.gm = traced(model)
        self.windows = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
        self.image = image.contiguous(memory_format=torch.channels_last)
        self.clean = self._clean_pass(image)
        self.plan: dict[fx.Node, _Step] = {}
        self._shapes_at_two: dict[fx.Node, object] = {}  # meta values for a batch of two copies
        self._padded: dict[tuple, torch.Tensor] = {}
        self._make_plan()
        self._last_uses = _last_uses(self.gm.graph)

    @property
    def clean_output(self):
        """The network's output for the picture itself, from the clean pass."""
        output = next(node for node in self.gm.graph.nodes if node.op == "output")
        return fx.node.map_arg(output.args[0], lambda n: self.clean[n])

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
            if overwrites_input(node, root) and node.all_input_nodes:
                source = node.all_input_nodes[0]
                if any(u is not node for u in source.users):
                    raise Unsupported(f"in-place {node.format_node()} aliases a tensor read elsewhere")
            self.plan[node] = self._classify(node)
        if not any(step.how == WINDOW and step.kind == LOCAL for step in self.plan.values()):
            raise Unsupported("no convolution or pooling runs on less than the whole map: nothing to save")

    def _classify(self, node: fx.Node) -> _Step:
        if node.op == "placeholder":
            w = self.windows
            return _Step(LOCAL, _Box.around((w[:, 0], w[:, 2]), (w[:, 1], w[:, 3]), tuple(self.image.shape[-2:])), NCHW)
        kinds = {self.plan[n].kind for n in node.all_input_nodes}
        if kinds <= {CONST} or (node.op == "call_method" and node.target == "dim"):
            return _Step(CONST)
        if node.op == "call_function" and node.target is getattr and node.args[1] in _SHAPE_FREE_ATTRS:
            return _Step(CONST)
        if _reads_shape(node) or kinds <= {CONST, META}:
            return self._meta(node)
        if FULL in kinds:
            return _Step(FULL)
        layouts = {n: self.plan[n].layout for n in node.all_input_nodes if self.plan[n].kind == LOCAL}
        found = local_layout(node, self.gm, layouts, self._clean_value, self._reshaped)
        value = self.clean[node]
        first = value[0] if isinstance(value, (tuple, list)) and value else value
        if found is None or not isinstance(first, torch.Tensor):
            return _Step(FULL)
        layout, how = found
        extent = tuple(first.shape[a] for a in layout.axes)
        boxes = [self.plan[n].box for n in layouts]
        if how == WINDOW:
            window = _window_op(self.gm.get_submodule(node.target))
            if window is None:
                return _Step(FULL)
            lo, hi = zip(*(window.affected(boxes[0].lo[a], boxes[0].hi[a], a, extent[a]) for a in range(2)))
            if any((h <= l).any() for l, h in zip(lo, hi)):
                return _Step(FULL)
            return self._boxed(_Step(LOCAL, layout=layout, how=how, window=window), lo, hi, extent)
        step = _Step(LOCAL, boxes[0], layout, how)
        if how == RESHAPE:
            step.shape = self._reshaped(node, next(iter(layouts)))[1]
        if len(boxes) == 1:
            return step
        lo = tuple(np.minimum.reduce([b.lo[a] for b in boxes]) for a in range(2))
        hi = tuple(np.maximum.reduce([b.hi[a] for b in boxes]) for a in range(2))
        return self._boxed(step, lo, hi, extent)

    def _boxed(self, step: _Step, lo, hi, extent) -> _Step:
        step.box = _Box.around(lo, hi, extent)
        if step.box.covers(extent):
            step.kind = FULL
        return step

    def _meta(self, node: fx.Node) -> _Step:
        """A value computed from shapes; its inputs' whole shapes must have the copies on dim 0."""
        for n in node.all_input_nodes:
            value = self.clean[n]
            if self.plan[n].kind in (LOCAL, FULL) and not (isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == 1):
                return _Step(FULL)
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: self._stand_in(n, 2))
        self._shapes_at_two[node] = self._call(node, args, kwargs)
        return _Step(META)

    def _clean_value(self, a):
        return fx.node.map_arg(a, lambda n: self.clean[n])

    def _stand_in(self, n: fx.Node, copies: int, env: dict | None = None):
        """``n``'s value as a shape reader sees it for ``copies`` occluded pictures: local values (all values
        while planning, ``env`` None) as their clean value broadcast over the copies."""
        kind = self.plan[n].kind
        if kind == CONST:
            return self.clean[n]
        if kind == META:
            return (self._shapes_at_two if env is None else env)[n]
        if kind == FULL and env is not None:
            return env[n]
        clean = self.clean[n]
        return clean.expand(copies, *clean.shape[1:])

    def _reshaped(self, node: fx.Node, source: fx.Node) -> tuple[torch.Size, torch.Size]:
        """The shapes of ``source`` and of ``node``'s output for a batch of two copies (run on the meta device)."""
        clean = self.clean[source]
        before = torch.empty((2, *clean.shape[1:]), dtype=clean.dtype, device="meta")
        args, kwargs = fx.node.map_arg(
            (node.args, node.kwargs), lambda n: before if n is source else self._stand_in(n, 2)
        )
        return before.shape, self._call(node, args, kwargs).shape

    # -- running ------------------------------------------------------------------------------

    def outputs(self, chosen: np.ndarray, fill: torch.Tensor) -> torch.Tensor:
        """The network's output for the occluded pictures ``windows[chosen]`` (window filled with ``fill``)."""
        env: dict[fx.Node, object] = {}
        for node in self.gm.graph.nodes:
            if node.op == "output":
                return fx.node.map_arg(node.args[0], lambda n: self._full(n, env[n], chosen))
            step = self.plan[node]
            if step.kind == CONST:
                env[node] = self.clean[node]
            elif step.kind == META:
                env[node] = self._call_on(node, lambda n: self._stand_in(n, len(chosen), env))
            elif node.op == "placeholder":
                env[node] = self._occluded_source(step.box, chosen, fill)
            elif step.how is not None:
                env[node] = self._run_local(node, step, env, chosen)
            else:
                env[node] = self._call_on(node, lambda n: self._full(n, env[n], chosen))
            for done in self._last_uses[node]:  # freed buffers are reused by the next allocations
                del env[done]
        raise RuntimeError("graph without output")

    def _call_on(self, node: fx.Node, value_of):
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), value_of)
        return self._call(node, args, kwargs)

    def _call(self, node: fx.Node, args, kwargs):
        if node.op == "call_module":
            return self.gm.get_submodule(node.target)(*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], node.target)(*args[1:], **kwargs)
        raise RuntimeError(f"cannot run {node.format_node()}")

    def _occluded_source(self, box: _Box, chosen: np.ndarray, fill: torch.Tensor) -> torch.Tensor:
        (h, w), (sy, sx) = box.size, (box.start[0][chosen], box.start[1][chosen])
        patch = torch.empty(
            (len(chosen), self.image.shape[1], h, w), dtype=self.image.dtype, device=self.image.device,
            memory_format=torch.channels_last,
        )
        for i, k in enumerate(chosen):
            y0, y1, x0, x1 = self.windows[k]
            patch[i] = self.image[0, :, sy[i] : sy[i] + h, sx[i] : sx[i] + w]
            patch[i, :, y0 - sy[i] : y1 - sy[i], x0 - sx[i] : x1 - sx[i]] = fill[0]
        return patch

    def _full(self, node: fx.Node, value, chosen: np.ndarray):
        """``node``'s occluded value as whole tensors (a box pasted into the clean value)."""
        step = self.plan[node]
        if step.kind != LOCAL:
            return value
        clean = self.clean[node]
        if isinstance(clean, (tuple, list)):
            return type(clean)(self._pasted(c, v, step, chosen) for c, v in zip(clean, value))
        return self._pasted(clean, value, step, chosen)

    def _pasted(self, clean: torch.Tensor, patch: torch.Tensor, step: _Step, chosen: np.ndarray) -> torch.Tensor:
        full = torch.empty((len(chosen), *clean.shape[1:]), dtype=clean.dtype, device=clean.device, memory_format=_format(clean))
        full.copy_(clean.expand(len(chosen), *clean.shape[1:]))
        self._paste(full, patch, step, chosen, (np.zeros(len(chosen), np.int64),) * 2)
        return full

    def _paste(self, target: torch.Tensor, patch: torch.Tensor, step: _Step, chosen: np.ndarray, origin) -> None:
        """Write ``patch`` (``step``'s box) into ``target``, whose [0, 0] sits at ``origin[i]`` for window i;
        what falls outside ``target`` is dropped."""
        axes = step.layout.axes
        target, patch = target.movedim(axes, (-2, -1)), patch.movedim(axes, (-2, -1))  # views: writes reach target
        size, extent = step.box.size, target.shape[-2:]
        offset = [step.box.start[a][chosen] - origin[a] for a in range(2)]  # the box's corner in target coordinates
        lo = [np.maximum(offset[a], 0) for a in range(2)]
        hi = [np.minimum(offset[a] + size[a], extent[a]) for a in range(2)]
        if all((offset[a] == offset[a][0]).all() and lo[a][0] == offset[a][0] and hi[a][0] == offset[a][0] + size[a] for a in range(2)):
            (y, x), (h, w) = (int(offset[0][0]), int(offset[1][0])), size  # one offset for the batch, all inside
            target[..., y : y + h, x : x + w] = patch
            return
        for i in range(len(chosen)):
            (y0, x0), (y1, x1) = (int(lo[0][i]), int(lo[1][i])), (int(hi[0][i]), int(hi[1][i]))
            if y1 > y0 and x1 > x0:
                oy, ox = int(offset[0][i]), int(offset[1][i])
                target[i, ..., y0:y1, x0:x1] = patch[i, ..., y0 - oy : y1 - oy, x0 - ox : x1 - ox]

    def _region(self, source: fx.Node, value, chosen, start, size, pad, pad_value) -> torch.Tensor:
        """Rows/cols [start, start + size) of local ``source``'s occluded value, padded with ``pad_value``
        outside the map: a contiguous tensor in ``source``'s layout."""
        step = self.plan[source]
        same_box = step.box.size == size and all((step.box.start[a][chosen] == start[a]).all() for a in range(2))
        if pad == (0, 0) and same_box:
            return value
        clean, axes = self.clean[source], step.layout.axes
        key = (source, pad, pad_value)
        if key not in self._padded:
            spatial_last = clean.movedim(axes, (-2, -1))
            self._padded[key] = F.pad(spatial_last, (pad[1], pad[1], pad[0], pad[0]), value=pad_value)[0]
        padded = self._padded[key]
        shape = list(clean.shape)
        shape[0], shape[axes[0]], shape[axes[1]] = len(chosen), *size
        region = torch.empty(shape, dtype=clean.dtype, device=clean.device, memory_format=_format(clean))
        spatial_last = region.movedim(axes, (-2, -1))
        (h, w), rows, cols = size, start[0] + pad[0], start[1] + pad[1]
        for i in range(len(chosen)):
            spatial_last[i] = padded[..., rows[i] : rows[i] + h, cols[i] : cols[i] + w]
        self._paste(region, value, step, chosen, start)
        return region

    def _run_local(self, node: fx.Node, step: _Step, env, chosen: np.ndarray) -> torch.Tensor:
        box = step.box
        start = (box.start[0][chosen], box.start[1][chosen])
        if step.how == WINDOW:
            window = step.window
            source = node.all_input_nodes[0]
            region_start = tuple(start[a] * window.stride[a] - window.padding[a] for a in range(2))
            size = tuple(window.span(box.size[a], a) for a in range(2))
            return window.fn(self._region(source, env[source], chosen, region_start, size, window.padding, window.pad_value))
        locals_ = [n for n in node.all_input_nodes if self.plan[n].kind == LOCAL]
        if len(locals_) > 1:  # operands with boxes of their own: read each on this node's box
            operands = {n: self._region(n, env[n], chosen, start, box.size, (0, 0), 0.0) for n in locals_}
        else:
            operands = {n: env[n] for n in locals_}
        if step.how == RESHAPE:
            shape = list(step.shape)
            shape[0], shape[step.layout.axes[0]], shape[step.layout.axes[1]] = len(chosen), *box.size
            return operands[locals_[0]].reshape(shape)
        return self._call_on(node, lambda n: operands[n] if n in operands else env[n])


def _last_uses(graph: fx.Graph) -> dict[fx.Node, list[fx.Node]]:
    """For each node, the inputs that no later node reads (as ``fx.Interpreter`` frees them)."""
    seen: set[fx.Node] = set()
    last: dict[fx.Node, list[fx.Node]] = {}
    for node in reversed(graph.nodes):
        last[node] = [n for n in node.all_input_nodes if n not in seen]
        seen.update(node.all_input_nodes)
    return last
