"""Static ONNX checks: external data refused wherever a tensor lives (a canary file proves it unread),
the operator allowlist, the node cap, and shapes inferred at every size the methods use."""

import time

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from engine.errors import ModelRejected
from engine.models.formats import read_onnx
from engine.models.onnx_checks import ALLOWED_OPERATORS, check_shapes
from tests.hostile_files import (
    EXTERNAL_PLACES, OPSET, Canary, constant_of_shape_bomb, external_data_onnx, fixed_size_onnx, input_dependent_bomb, many_nodes_onnx,
)
from tests.model_files import onnx_bytes, tiny_net

SIZES = [(64, 64), (32, 32), (128, 128)]  # native, smaller, larger
GIB = 2**30


def refused(data: bytes, **kwargs) -> ModelRejected:
    with pytest.raises(ModelRejected) as caught:
        read_onnx(data, **kwargs)
    return caught.value


# -- external data ----------------------------------------------------------------------------------


@pytest.fixture
def canary(tmp_path, monkeypatch) -> Canary:
    """``canary.bin`` in the working directory, where a relative external-data path points."""
    monkeypatch.chdir(tmp_path)
    return Canary(tmp_path / "canary.bin")


def test_the_canary_notices_a_read(canary, tmp_path):
    """The detector works on this file system: loading the external data the honest way moves its access time."""
    proto = onnx.load_model_from_string(external_data_onnx("canary.bin", "initializer"))
    assert not canary.read()
    onnx.load_external_data_for_model(proto, str(tmp_path))
    (loaded,) = [tensor for tensor in proto.graph.initializer if tensor.name == "w"]
    assert canary.read() and loaded.raw_data == canary.contents[:16]


@pytest.mark.parametrize("place", EXTERNAL_PLACES)
def test_external_data_is_refused_unread_wherever_the_tensor_lives(canary, place):
    error = refused(external_data_onnx("canary.bin", place))
    assert error.code == "invalid_onnx" and "external data" in error.message
    assert canary.untouched()
    assert canary.contents[:8].decode() not in error.message


# -- operators ------------------------------------------------------------------------------------


def _single(op: str, domain: str = "", **attrs) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
         helper.make_node(op, ["f"], ["y"], domain=domain, **attrs)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3])],
    )
    opsets = OPSET + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _loop() -> bytes:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["carried"], ["carried_out"])], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("carried", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("carried_out", TensorProto.FLOAT, None)],
    )
    nodes = [helper.make_node("Constant", [], ["n"], value=helper.make_tensor("n", TensorProto.INT64, [], [10**9])),
             helper.make_node("Constant", [], ["go"], value=helper.make_tensor("go", TensorProto.BOOL, [], [True])),
             helper.make_node("Loop", ["n", "go", "x"], ["y"], body=body)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3, 64, 64])])
    return helper.make_model(graph, opset_imports=OPSET).SerializeToString()


@pytest.mark.parametrize("case, named", [
    ("hardmax", "Hardmax"), ("random", "RandomNormalLike"), ("nonzero", "NonZero"), ("loop", "Loop"), ("custom", "evil.Steal"),
])
def test_operators_off_the_allowlist_are_refused_by_name(case, named):
    data = {
        "hardmax": lambda: _single("Hardmax", axis=1),
        "random": lambda: _single("RandomNormalLike"),
        "nonzero": lambda: _single("NonZero"),
        "loop": _loop,
        "custom": lambda: _single("Steal", domain="evil"),
    }[case]()
    error = refused(data)
    assert error.code == "unsupported_operator" and named in error.message


def test_every_allowed_operator_is_standard_and_converted_by_onnx2torch():
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY

    converted = {description.operation_type for description in _CONVERTER_REGISTRY if description.domain == ""}
    assert ALLOWED_OPERATORS <= converted, ALLOWED_OPERATORS - converted
    assert all(onnx.defs.has(op) for op in ALLOWED_OPERATORS)
    assert not {"If", "Loop", "Scan", "NonZero", "RandomNormal", "RandomUniform", "Multinomial", "Bernoulli"} & ALLOWED_OPERATORS


def test_a_torchvision_style_export_passes():
    proto = read_onnx(onnx_bytes(tiny_net(), (64, 64)), max_nodes=100)
    assert {node.op_type for node in proto.graph.node} <= ALLOWED_OPERATORS


# -- node count -----------------------------------------------------------------------------------


def test_a_100k_node_graph_is_refused_before_anything_else_reads_it():
    data = many_nodes_onnx(100_000)
    start = time.perf_counter()
    error = refused(data, max_nodes=20_000)
    took = time.perf_counter() - start
    assert error.code == "too_many_nodes" and "20,000" in error.message
    assert took < 5, f"the node cap took {took:.1f} s"  # the registration of this graph took 64 s
    assert read_onnx(many_nodes_onnx(50), max_nodes=50).graph.node  # at the cap: accepted


# -- shapes ---------------------------------------------------------------------------------------


def test_a_constant_of_shape_bomb_is_refused_naming_tensor_shape_and_limit():
    data = constant_of_shape_bomb()
    assert len(data) < 400
    with pytest.raises(ModelRejected) as caught:
        check_shapes(read_onnx(data), SIZES, GIB)
    assert caught.value.code == "tensor_too_large"
    assert "'big'" in caught.value.message and "(1, 1, 23170, 23170)" in caught.value.message
    assert "2,147,395,600 bytes" in caught.value.message and "1,073,741,824" in caught.value.message


def test_an_input_dependent_bomb_is_refused_as_data_dependent():
    with pytest.raises(ModelRejected) as caught:
        check_shapes(read_onnx(input_dependent_bomb()), SIZES, GIB)
    assert caught.value.code == "data_dependent_shape" and "'big'" in caught.value.message


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: the reshape's sizes are computed from the input's shape (Shape, Gather, Div)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        y = y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.head(y.mean((2, 3)))


def test_shape_arithmetic_is_folded_so_a_channel_shuffle_is_determined():
    torch.manual_seed(0)
    proto = read_onnx(onnx_bytes(ChannelShuffle().eval(), (64, 64)))
    assert {"Shape", "Div", "Reshape"} <= {node.op_type for node in proto.graph.node}
    assert check_shapes(proto, SIZES, GIB) == {size: None for size in SIZES}


def test_a_fixed_size_export_passes_at_its_native_size_only():
    verdicts = check_shapes(read_onnx(fixed_size_onnx()), SIZES, GIB)
    assert verdicts[(64, 64)] is None
    assert "Gemm" in verdicts[(32, 32)] and "Gemm" in verdicts[(128, 128)]


def test_the_byte_cap_applies_at_every_size_and_batch():
    """tiny_net's largest tensor is its first conv's output, 8 channels of float32: 131,072 bytes at
    batch 1 and 64 px, twice that at batch 2; 524,288 at batch 1 and 128 px, 1,048,576 at batch 2."""
    proto = read_onnx(onnx_bytes(tiny_net(), (64, 64)))
    verdicts = check_shapes(proto, SIZES, 600_000)
    assert verdicts[(64, 64)] is None and verdicts[(32, 32)] is None
    assert "1,048,576 bytes" in verdicts[(128, 128)] and "(2, 8, 128, 128)" in verdicts[(128, 128)]
    with pytest.raises(ModelRejected) as caught:
        check_shapes(proto, SIZES, 262_143)
    assert caught.value.code == "tensor_too_large" and "(2, 8, 64, 64)" in caught.value.message
