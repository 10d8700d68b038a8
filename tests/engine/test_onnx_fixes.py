"""ONNX conversion ends in a graph torch.fx can trace, computing what onnx2torch's own modules compute."""

import numpy as np
import onnx
import onnx2torch
import pytest
import torch
import torch.fx as fx
from onnx import TensorProto, helper, numpy_helper

from engine.attribution.occlusion_trace import traced
from engine.models.folding import fold_batch_norms
from engine.models.formats import onnx_network, read_onnx
from engine.models.onnx_fixes import TypedDiv
from engine.relu_rules import build_rule_copy
from tests.engine.onnx_copies import onnx_copy

ARCHITECTURES = ["shufflenet_v2_x0_5", "convnext_tiny"]


def div_model(elem_type: int, divisor: np.ndarray) -> bytes:
    """y = x / divisor, with x a graph input of ``elem_type`` and divisor an initializer."""
    graph = helper.make_graph(
        [helper.make_node("Div", ["x", "d"], ["y"], name="Div")],
        "div",
        [helper.make_tensor_value_info("x", elem_type, [4])],
        [helper.make_tensor_value_info("y", elem_type, [4])],
        [numpy_helper.from_array(divisor, "d")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.mark.parametrize(
    "elem_type, x, divisor, expected",
    [
        # integer Div truncates toward zero (floor division would give -3 and -3 for the negative quotients)
        (TensorProto.INT64, [-7, 7, -7, 7], [2, 2, -2, -2], [-3, 3, 3, -3]),
        (TensorProto.INT32, [-5, 9, 0, 1], [3, -4, 5, 1], [-1, -2, 0, 1]),
        (TensorProto.FLOAT, [-7.0, 7.0, 1.0, 3.0], [2.0, -4.0, 3.0, 0.5], [-3.5, -1.75, 1 / 3, 6.0]),
    ],
)
def test_div_is_specialised_by_element_type_and_traces(elem_type, x, divisor, expected):
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    data = div_model(elem_type, np.array(divisor, dtype=dtype))
    ours = onnx_network(data)
    theirs = onnx2torch.convert(read_onnx(data))  # the converter's own branching module
    inputs = torch.from_numpy(np.array(x, dtype=dtype))
    module = ours.get_submodule("Div")
    assert isinstance(module, TypedDiv) and module.integer == (elem_type != TensorProto.FLOAT)
    trace = fx.symbolic_trace(ours)
    for result in (ours(inputs), trace(inputs)):
        assert result.dtype == theirs(inputs).dtype
        torch.testing.assert_close(result, theirs(inputs), rtol=0, atol=0)
        torch.testing.assert_close(result, torch.tensor(expected, dtype=result.dtype), rtol=1e-7, atol=0)
    with pytest.raises(fx.proxy.TraceError):
        fx.symbolic_trace(theirs)  # the converter's module branches on a dtype tracing cannot see


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_onnx_copies_trace_and_compute_the_original_function(name):
    original, copy, data = onnx_copy(name)
    plain = onnx2torch.convert(read_onnx(data))
    x = torch.rand(3, 3, 96, 80)  # another batch and size than the export's: shapes stay computed, not frozen
    with torch.no_grad():
        expected = original.net(x)
        for other in (copy.net, fx.symbolic_trace(copy.net), plain):
            torch.testing.assert_close(other(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_everything_that_traces_reads_the_onnx_copies(name):
    original, copy, _ = onnx_copy(name)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = copy(x)
        torch.testing.assert_close(fold_batch_norms(copy)(x), expected, rtol=1e-5, atol=1e-6)
        # occlusion's trace has channels-last convolutions and fused GELU / linear calls: equal up to rounding
        torch.testing.assert_close(traced(copy)(x), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
        rules = build_rule_copy(copy, "guided")
        torch.testing.assert_close(rules.module(x), expected, rtol=0, atol=0)
    relus = sum(isinstance(m, torch.nn.ReLU) for m in original.net.modules())
    assert rules.gates == {"shufflenet_v2_x0_5": 37, "convnext_tiny": 0}[name] == relus


def test_the_converted_graph_holds_no_converter_branching_modules():
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation, _onnx_div
    from onnx2torch.node_converters.reshape import OnnxReshape
    from onnx2torch.node_converters.shape import OnnxShape
    from onnx2torch.node_converters.slice import OnnxSlice

    _, copy, data = onnx_copy("shufflenet_v2_x0_5")
    kinds = [type(m) for m in copy.net.modules()]
    assert not {OnnxReshape, OnnxShape, OnnxSlice} & set(kinds)
    assert not any(isinstance(m, OnnxBinaryMathOperation) and m.math_op_function is _onnx_div for m in copy.net.modules())
    divisions = [n for n in onnx.load_from_string(data).graph.node if n.op_type == "Div"]
    assert len(divisions) > 20 and sum(k is TypedDiv for k in kinds) == len(divisions)
