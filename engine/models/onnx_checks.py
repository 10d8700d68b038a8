"""Static checks of an ONNX graph, made before anything converts or runs it.

An ONNX file is a program: a tensor may name a file to read its bytes from
(external data), an operator may loop, branch or draw random numbers, and a
377-byte graph may build a 2 GB tensor. So a registered graph must

- hold every tensor inside the file, wherever a tensor can live (initializers,
  sparse initializers, every tensor attribute, in subgraphs, functions and
  training info too): :func:`check_no_external_data`;
- use only the default domain's pure tensor operators that CNN exports
  (torchvision, timm) use, no control flow: :func:`check_operators`;
- stay small enough to check: :func:`check_node_count`, first;
- have every intermediate shape follow from the input size alone, and no
  tensor over a byte cap, at each input size the methods use:
  :func:`check_shapes`. ONNX's own per-node shape inference runs node by node
  (``infer_node_outputs``, strict), and small shape arithmetic (``Shape`` ->
  ``Gather`` -> ``Div`` -> ``Reshape``) is folded with the reference evaluator:
  ``infer_shapes(data_prop=True)`` alone propagates no ``Div``, so it leaves a
  torchvision ShuffleNet's channel shuffle undetermined.

Every function is pure: it reads the ``ModelProto`` and raises
:class:`~engine.errors.ModelRejected` naming what it refused.
"""

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import defs, helper, numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

from engine.errors import ModelRejected

Size = tuple[int, int]  # (height, width)

ALLOWED_OPERATORS = frozenset({
    # layers
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "InstanceNormalization", "LayerNormalization", "LRN",
    "MaxPool", "AveragePool", "GlobalAveragePool", "Dropout", "Identity",
    # activations and elementwise arithmetic
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
    "Softplus", "Softsign", "Erf", "Exp", "Log", "Sqrt", "Pow", "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign",
    "Add", "Sub", "Mul", "Div", "Mod", "Min", "Max", "Sum", "Mean", "Softmax", "LogSoftmax",
    "Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Not", "And", "Or", "Where", "Cast",
    # reductions
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSumExp",
    # shapes and indexing (sizes from constants or from the input's shape, checked by check_shapes)
    "Reshape", "Transpose", "Flatten", "Concat", "Split", "Slice", "Gather", "Shape", "Unsqueeze", "Squeeze",
    "Expand", "Tile", "Pad", "Resize", "DepthToSpace", "Constant", "ConstantOfShape", "Range",
})
_DEFAULT_DOMAINS = ("", "ai.onnx")
_FOLDED_ELEMENTS = 1024  # shape arithmetic is a handful of integers; larger values are never evaluated


# -- where nodes and tensors live ---------------------------------------------------------------


def _graphs(proto: onnx.ModelProto) -> Iterator[tuple[str, onnx.GraphProto]]:
    """Every graph in the file (the main one, training info, function bodies, all their subgraphs), with where it is."""
    pending = [("the graph", proto.graph)]
    for i, info in enumerate(proto.training_info):
        pending += [(f"training info {i}", info.initialization), (f"training info {i}", info.algorithm)]
    pending += [(f"function {function.name!r}", onnx.GraphProto(node=function.node)) for function in proto.functions]
    while pending:
        where, graph = pending.pop()
        yield where, graph
        for node in graph.node:
            pending += [(f"a subgraph of node {node.name!r}", sub) for sub in _subgraphs(node)]


def _subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    # every field, whatever the attribute's declared type says
    return [graph for attr in node.attribute for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)]


def _tensors(graph: onnx.GraphProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """Every tensor held directly by ``graph`` (not its subgraphs), with what holds it."""
    for tensor in graph.initializer:
        yield f"initializer {tensor.name!r}", tensor
    for sparse in graph.sparse_initializer:
        yield f"sparse initializer {sparse.values.name!r}", sparse.values
        yield f"sparse initializer {sparse.values.name!r} (indices)", sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            held = f"attribute {attr.name!r} of {node.op_type} node {node.name!r}"
            sparse = ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)
            for tensor in ([attr.t] if attr.HasField("t") else []) + list(attr.tensors):
                yield held, tensor
            for tensor in sparse:
                yield held, tensor.values
                yield f"{held} (indices)", tensor.indices


# -- the checks -----------------------------------------------------------------------------------


def check_node_count(proto: onnx.ModelProto, max_nodes: int) -> None:
    """Refuse a graph of more than ``max_nodes`` nodes (subgraphs and functions counted)."""
    count = 0
    for _where, graph in _graphs(proto):
        count += len(graph.node)
        if count > max_nodes:
            raise ModelRejected("too_many_nodes", f"the graph has more than {max_nodes:,} nodes, the limit")


def check_no_external_data(proto: onnx.ModelProto) -> None:
    """Refuse any tensor, wherever it lives, whose bytes are said to be outside the file."""
    for where, graph in _graphs(proto):
        for held, tensor in _tensors(graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
                raise ModelRejected(
                    "invalid_onnx",
                    f"the tensor of {held} in {where} is stored outside the file (external data); send one self-contained file",
                )


def check_operators(proto: onnx.ModelProto) -> None:
    """Refuse operators off the allowlist (naming the first), custom domains, functions and subgraphs."""
    if proto.functions:
        raise ModelRejected("unsupported_operator", f"the model defines functions ({proto.functions[0].name!r}); export it without local functions")
    for node in proto.graph.node:
        if node.domain not in _DEFAULT_DOMAINS:
            raise ModelRejected("unsupported_operator", f"operator {node.domain}.{node.op_type} (node {node.name!r}) is from a custom domain; only standard ONNX operators are accepted")
        if node.op_type not in ALLOWED_OPERATORS:
            raise ModelRejected(
                "unsupported_operator",
                f"operator {node.op_type} (node {node.name!r}) is not accepted: registered models may use only the "
                "pure tensor operators CNN exports use (no control flow, random numbers or data-dependent shapes)",
            )
        if _subgraphs(node):
            raise ModelRejected("unsupported_operator", f"node {node.name!r} ({node.op_type}) carries a subgraph")


# -- shapes ---------------------------------------------------------------------------------------


class _SizeRefused(Exception):
    """The graph fails (``model_failed``) or holds a tensor over the byte cap (``tensor_too_large``) at one input size."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def check_shapes(proto: onnx.ModelProto, sizes: list[Size], max_tensor_bytes: int) -> dict[Size, str | None]:
    """Infer every tensor's shape at each size (batch 1 and 2); ``sizes[0]`` is the native size.

    Refuses a graph with a shape that depends on the input's values (at any size) or that fails,
    or holds a tensor over ``max_tensor_bytes``, at the native size. Returns, for every size,
    None when the graph passes there, else why not.
    """
    verdicts: dict[Size, str | None] = {}
    for size in sizes:
        try:
            for batch in (1, 2):
                _infer_at(proto, batch, size, max_tensor_bytes)
            verdicts[size] = None
        except _SizeRefused as exc:
            if size == sizes[0]:
                raise ModelRejected(exc.code, f"at its declared input size, {exc}") from None
            verdicts[size] = str(exc)
    return verdicts


def _infer_at(proto: onnx.ModelProto, batch: int, size: Size, max_tensor_bytes: int) -> None:
    """Infer every node's output types at input ``(batch, 3, *size)``, folding small shape arithmetic."""
    graph = proto.graph
    opsets = {("" if op.domain == "ai.onnx" else op.domain): op.version for op in proto.opset_import}
    types: dict[str, onnx.TypeProto] = {}
    values: dict[str, onnx.TensorProto] = {}
    for tensor in graph.initializer:
        types[tensor.name] = helper.make_tensor_type_proto(tensor.data_type, list(tensor.dims))
        if np.prod(tensor.dims, dtype=np.int64) <= _FOLDED_ELEMENTS:
            values[tensor.name] = tensor
    for value in graph.input:
        if value.name not in types:  # the picture
            types[value.name] = helper.make_tensor_type_proto(value.type.tensor_type.elem_type, [batch, 3, *size])
    where = f"input ({batch}, 3, {size[0]}, {size[1]})"
    for node in graph.node:
        try:
            schema = defs.get_schema(node.op_type, opsets.get(node.domain or "", 1), node.domain or "")
            known = {name: values[name] for name in node.input if name in values}
            outputs = shape_inference.infer_node_outputs(
                schema, node, {name: types[name] for name in node.input if name}, known, opset_imports=list(proto.opset_import),
            )
        except Exception as exc:  # onnx's inference raises several types (InferenceError, SchemaError, ValidationError)
            raise _SizeRefused("model_failed", f"node {node.name!r} ({node.op_type}) fails at {where}: {_first_line(exc)}") from None
        for name in node.output:
            if not name:
                continue
            if name not in outputs:
                raise _undetermined(node, name, None)
            types[name] = outputs[name]
            dims = _static_dims(outputs[name])
            if dims is None:
                raise _undetermined(node, name, outputs[name])
            nbytes = int(np.prod(dims, dtype=np.int64)) * _itemsize(outputs[name].tensor_type.elem_type)
            if nbytes > max_tensor_bytes:
                raise _SizeRefused(
                    "tensor_too_large",
                    f"tensor {name!r} ({node.op_type} node {node.name!r}) has shape {tuple(dims)} at {where}: "
                    f"{nbytes:,} bytes, over the limit of {max_tensor_bytes:,} bytes"
                )
        _fold(node, types, values, opsets)


def _fold(node: onnx.NodeProto, types: dict, values: dict, opsets: dict) -> None:
    """Record the values of ``node``'s outputs when they are small and follow from known values or static shapes."""
    if node.op_type in ("Shape", "Size"):
        dims = _static_dims(types[node.input[0]])
        if node.op_type == "Size":
            values[node.output[0]] = numpy_helper.from_array(np.array(np.prod(dims, dtype=np.int64)))
            return
        attrs = {attr.name: helper.get_attribute_value(attr) for attr in node.attribute}
        values[node.output[0]] = numpy_helper.from_array(np.array(dims[attrs.get("start", 0):attrs.get("end")], dtype=np.int64))
        return
    inputs = [name for name in node.input if name]
    outputs = [name for name in node.output if name]
    if not all(name in values for name in inputs):
        return
    if any(np.prod(_static_dims(types[name]), dtype=np.int64) > _FOLDED_ELEMENTS for name in outputs):
        return
    try:
        results = ReferenceEvaluator(node, opsets=opsets).run(None, {name: numpy_helper.to_array(values[name]) for name in inputs})
    except Exception as exc:  # the reference evaluator raises what numpy raises
        raise _SizeRefused("model_failed", f"node {node.name!r} ({node.op_type}) fails on its constant inputs: {_first_line(exc)}") from None
    for name, result in zip(node.output, results):
        if name:
            values[name] = numpy_helper.from_array(np.asarray(result))


def _static_dims(value: onnx.TypeProto) -> list[int] | None:
    tensor = value.tensor_type
    if not value.HasField("tensor_type") or tensor.elem_type == onnx.TensorProto.UNDEFINED or not tensor.HasField("shape"):
        return None
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
    return None if None in dims or any(d < 0 for d in dims) else dims


def _undetermined(node: onnx.NodeProto, name: str, value: onnx.TypeProto | None) -> ModelRejected:
    shown = "unknown"
    if value is not None and value.tensor_type.HasField("shape"):
        shown = "(" + ", ".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in value.tensor_type.shape.dim) + ")"
    return ModelRejected(
        "data_dependent_shape",
        f"tensor {name!r} ({node.op_type} node {node.name!r}) has a shape {shown} that depends on the input's values; "
        "every shape must follow from the input size alone",
    )


def _itemsize(elem_type: int) -> int:
    try:
        return max(1, helper.tensor_dtype_to_np_dtype(elem_type).itemsize)
    except (KeyError, TypeError, ValueError):
        return 8


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
