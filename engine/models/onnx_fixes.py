"""onnx2torch modules that ``torch.fx`` cannot trace, replaced after conversion by exact equivalents.

onnx2torch's GraphModule runs, but some of its modules decide at run time what
to compute from a tensor's dtype or values, which symbolic tracing cannot
evaluate; every method that traces the network (the ReLU rules, batch-norm
folding, incremental occlusion) would then refuse it.

- ``Div`` branches on ``is_floating_point()``. ONNX type inference gives each
  input's element type, so each Div becomes a float or a truncating division.
- ``Shape`` builds a tensor from a size, ``Reshape`` checks its shape for zeros,
  ``Slice`` loops over its starts. These depend on shapes only: each becomes one
  call of the same onnx2torch computation, recorded whole by the tracer
  (``torch.fx.wrap``), so the traced graph says "reshape x to this shape".

Nothing else changes: the replacements compute what the modules they replace did.
"""

import torch
import torch.fx as fx
from torch import nn

_FLOAT_TYPES = {1, 10, 11, 16}  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


@torch.fx.wrap
def onnx_shape(x: torch.Tensor, start: int, end: int | None) -> torch.Tensor:
    """ONNX Shape: ``x``'s sizes ``[start:end]`` as an int64 tensor on ``x``'s device."""
    return torch.tensor(x.shape[start:end], device=x.device)


@torch.fx.wrap
def onnx_reshape(x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """ONNX Reshape (``allowzero=0``: a 0 keeps the input's size, -1 is inferred)."""
    from onnx2torch.node_converters.reshape import OnnxReshape

    return OnnxReshape._do_reshape(x, shape)


@torch.fx.wrap
def onnx_slice(x: torch.Tensor, starts, ends, axes=None, steps=None) -> torch.Tensor:
    """ONNX Slice (opset 10+) with onnx2torch's slices, indexed by a tuple (its list index is deprecated)."""
    from onnx2torch.node_converters.slice import _get_slices

    flip_dims, leading, trailing = _get_slices(starts, ends, axes, steps)
    if flip_dims:
        x = torch.flip(x, dims=flip_dims)
    if leading:
        x = x[tuple(leading)]
    if trailing:
        x = x[tuple(trailing)]
    return x


class TypedDiv(nn.Module):
    """ONNX Div for inputs of a known element type: true division for floats, truncating for integers."""

    def __init__(self, integer: bool, broadcast: int | None = None, axis: int | None = None):
        super().__init__()
        self.integer, self.broadcast, self.axis = integer, broadcast, axis

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if self.broadcast == 1 and self.axis is not None:
            from onnx2torch.utils.common import old_style_broadcast

            second = old_style_broadcast(first, second, self.axis)
        if self.integer:
            return torch.div(first, second, rounding_mode="trunc")
        return torch.div(first, second)

    def extra_repr(self) -> str:
        return "integer" if self.integer else "float"


class TracedShape(nn.Module):
    def __init__(self, start: int, end: int | None):
        super().__init__()
        self.start, self.end = start, end

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return onnx_shape(x, self.start, self.end)


class TracedReshape(nn.Module):
    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        return onnx_reshape(x, shape)


class TracedSlice(nn.Module):
    def forward(self, x: torch.Tensor, starts, ends, axes=None, steps=None) -> torch.Tensor:
        return onnx_slice(x, starts, ends, axes, steps)


def element_types(proto) -> dict[str, int]:
    """Every value's ONNX element type (``TensorProto`` enum) that type inference can tell."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    graph = inferred.graph
    types = {t.name: t.data_type for t in graph.initializer}
    for value in (*graph.input, *graph.value_info, *graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.elem_type:
            types[value.name] = value.type.tensor_type.elem_type
    return types


def make_traceable(network: fx.GraphModule, proto) -> fx.GraphModule:
    """Replace, in place, the untraceable modules of onnx2torch's ``network`` (converted from ``proto`` with
    ``attach_onnx_mapping=True``); a Div whose input types inference cannot tell is left as it was."""
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation, _onnx_div
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.shape import OnnxShape
    from onnx2torch.node_converters.slice import OnnxSlice

    types = None
    for node in network.graph.nodes:
        if node.op != "call_module":
            continue
        module = network.get_submodule(node.target)
        replacement = None
        if isinstance(module, OnnxBinaryMathOperation) and module.math_op_function is _onnx_div:
            types = element_types(proto) if types is None else types
            known = [types[name] for name in module.onnx_mapping.inputs if name in types]
            if known:
                integer = not any(t in _FLOAT_TYPES for t in known)
                replacement = TypedDiv(integer, module.broadcast, module.axis)
        elif isinstance(module, OnnxShape):
            replacement = TracedShape(module._start, module._end)
        elif isinstance(module, OnnxReshape):
            replacement = TracedReshape()
        elif isinstance(module, OnnxSlice):
            replacement = TracedSlice()
        if replacement is not None:
            replacement.onnx_mapping = module.onnx_mapping
            setattr(network, node.target, replacement)
    return network
