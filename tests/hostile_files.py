"""The attack corpus: hostile model files the tests build themselves, and a canary file to prove one unread.

Networks inside are tiny and have random weights (what they compute does not
matter, only what their files make a loader do). Hostile ``.pt2`` programs are
real exports whose serialized graph (``models/model.json``) is then edited, as
an attacker would: ``torch.export`` itself refuses to trace ``from_file``.
"""

import io
import json
import os
import zipfile
from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn

from tests.model_files import onnx_bytes, pt2_bytes, tiny_net

OPSET = [helper.make_opsetid("", 17)]


class Canary:
    """A file an attack targets: written with known bytes and its access time set well before its
    modification time, so that any read moves the access time even on a ``relatime`` mount."""

    def __init__(self, path: Path, contents: bytes = b"canary: never to be read or written\n"):
        self.path, self.contents = path, contents
        path.write_bytes(contents)
        modified = os.stat(path).st_mtime_ns
        os.utime(path, ns=(modified - 10**12, modified))
        self.stat = os.stat(path)

    def read(self) -> bool:
        return os.stat(self.path).st_atime_ns != self.stat.st_atime_ns

    def untouched(self) -> bool:
        """Neither read nor written since it was made; checking reads it, then puts its times back, so it can be checked again."""
        now = os.stat(self.path)
        same = self.path.read_bytes() == self.contents
        os.utime(self.path, ns=(self.stat.st_atime_ns, self.stat.st_mtime_ns))
        return same and now.st_mtime_ns == self.stat.st_mtime_ns and now.st_atime_ns == self.stat.st_atime_ns


# -- ONNX ---------------------------------------------------------------------------------------


def _graph(nodes, initializers=(), output_shape=("b", 1, 1, 1), name="g", picture=("b", 3, 64, 64)) -> onnx.GraphProto:
    return helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(picture))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))], list(initializers),
    )


def _external(name: str, location: str) -> TensorProto:
    """A 4-float tensor whose bytes are said to be in file ``location``."""
    tensor = helper.make_tensor(name, TensorProto.FLOAT, [4], [0.0] * 4)
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _sparse(values: TensorProto) -> onnx.SparseTensorProto:
    return helper.make_sparse_tensor(values, helper.make_tensor("i", TensorProto.INT64, [4], [0, 1, 2, 3]), [4])


def _mean_plus(extra: str) -> list[onnx.NodeProto]:
    """y = mean(conv(x)) + sum(extra): a graph with one weight (:data:`CONV_WEIGHT`) that reads tensor ``extra``."""
    return [
        helper.make_node("Conv", ["x", "conv_w"], ["c"]),
        helper.make_node("ReduceMean", ["c"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("ReduceSum", [extra], ["s"], keepdims=1),
        helper.make_node("Add", ["m", "s"], ["y"]),
    ]


CONV_WEIGHT = helper.make_tensor("conv_w", TensorProto.FLOAT, [1, 3, 1, 1], [1.0, 1.0, 1.0])


EXTERNAL_PLACES = ("initializer", "sparse_initializer", "constant", "sparse_constant", "tensors_attribute", "subgraph", "function", "training_info")


def external_data_onnx(location: str, place: str) -> bytes:
    """A graph one of whose tensors, in ``place``, claims its bytes are in file ``location``."""
    nodes, initializers, extra = _mean_plus("w"), [CONV_WEIGHT], {}
    if place == "initializer":
        initializers.append(_external("w", location))
    elif place == "sparse_initializer":
        extra["sparse_initializer"] = [_sparse(_external("w", location))]
    elif place == "constant":
        nodes = [helper.make_node("Constant", [], ["w"], value=_external("c", location))] + nodes
    elif place == "sparse_constant":
        nodes = [helper.make_node("Constant", [], ["w"], sparse_value=_sparse(_external("c", location)))] + nodes
    elif place == "tensors_attribute":
        constant = helper.make_node("Constant", [], ["w"], value_floats=[0.0] * 4)
        constant.attribute.append(helper.make_attribute("hidden", [_external("c", location)]))
        nodes = [constant] + nodes
    elif place == "subgraph":
        branch = helper.make_graph([helper.make_node("Constant", [], ["w_in"], value=_external("c", location))], "branch", [],
                                   [helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [4])])
        nodes = [helper.make_node("Constant", [], ["cond"], value=helper.make_tensor("t", TensorProto.BOOL, [], [True])),
                 helper.make_node("If", ["cond"], ["w"], then_branch=branch, else_branch=branch)] + nodes
    else:
        initializers.append(helper.make_tensor("w", TensorProto.FLOAT, [4], [0.0] * 4))
    model = helper.make_model(_graph(nodes, initializers), opset_imports=OPSET + [helper.make_opsetid("local", 1)])
    for field, values in extra.items():
        getattr(model.graph, field).extend(values)
    if place == "function":
        body = [helper.make_node("Constant", [], ["out"], value=_external("c", location))]
        model.functions.append(helper.make_function("local", "Leak", [], ["out"], body, OPSET))
    if place == "training_info":
        info = model.training_info.add()
        info.initialization.CopyFrom(helper.make_graph([helper.make_node("Constant", [], ["z"], value=_external("c", location))], "init", [], []))
    return model.SerializeToString()


def constant_of_shape_bomb() -> bytes:
    """Under 400 bytes that build a 1x1x23170x23170 float tensor (2 GB) on every call."""
    nodes = [
        helper.make_node("Constant", [], ["shape"], value=helper.make_tensor("s", TensorProto.INT64, [4], [1, 1, 23170, 23170])),
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
    ] + _mean_plus("big")
    return helper.make_model(_graph(nodes, [CONV_WEIGHT]), opset_imports=OPSET).SerializeToString()


def input_dependent_bomb() -> bytes:
    """A square tensor whose side is the picture's largest value: tiny on a zero picture, huge on a bright one."""
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["peak"], keepdims=0),
        helper.make_node("Mul", ["peak", "scale"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["side"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["side", "axis"], ["side1"]),
        helper.make_node("Concat", ["side1", "side1"], ["shape"], axis=0),
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
    ] + _mean_plus("big")
    initializers = [CONV_WEIGHT, helper.make_tensor("scale", TensorProto.FLOAT, [], [20000.0]), helper.make_tensor("axis", TensorProto.INT64, [1], [0])]
    return helper.make_model(_graph(nodes, initializers), opset_imports=OPSET).SerializeToString()


def many_nodes_onnx(count: int = 100_000) -> bytes:
    """A chain of ``count`` Relu nodes (a valid, pointless graph)."""
    names = ["x"] + [f"r{i}" for i in range(count - 1)] + ["y"]
    nodes = [helper.make_node("Relu", [names[i]], [names[i + 1]], name=f"relu{i}") for i in range(count)]
    return helper.make_model(_graph(nodes, output_shape=("b", 3, 64, 64)), opset_imports=OPSET).SerializeToString()


def weightless_onnx() -> bytes:
    """A valid image -> 3 scores graph without a single weight: global average pooling, flattened."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
    return helper.make_model(_graph(nodes, output_shape=("b", 3)), opset_imports=OPSET).SerializeToString()


class FixedPoolNet(nn.Module):
    """Adaptive pooling to 2x2 then a linear layer: the legacy exporter writes the pooling as a fixed
    AveragePool (kernel 16 at 64 px), so the file runs at 64x64 only, like torchvision's vgg11_bn."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.pool(self.conv(x))), 1))


def fixed_size_onnx() -> bytes:
    torch.manual_seed(0)
    return onnx_bytes(FixedPoolNet().eval(), (64, 64))


# -- torch.export ---------------------------------------------------------------------------------


class _MakesBytes(nn.Module):
    """Adds the first four of 16 bytes to tiny logits; those bytes will be re-pointed at a file."""

    def __init__(self):
        super().__init__()
        self.net = tiny_net()

    def forward(self, x):
        data = torch.zeros(16, dtype=torch.uint8)
        data.fill_(88)  # "X": overwrites the file through a shared mapping
        return self.net(x) + data[:4].float()


def _edit_pt2(data: bytes, edit) -> bytes:
    """``data`` with its serialized program (a JSON document) passed through ``edit``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            member = source.read(info.filename)
            if info.filename.endswith("models/model.json"):
                document = json.loads(member)
                edit(document)
                member = json.dumps(document).encode()
            archive.writestr(info, member)
    return out.getvalue()


def pt2_reading_file(path: Path) -> bytes:
    """A program whose graph maps ``path`` with ``aten::from_file(path, shared=True)`` and overwrites it."""

    def point_at_file(document):
        for node in document["graph_module"]["graph"]["nodes"]:
            if node["target"] == "torch.ops.aten.zeros.default":
                node["target"] = "torch.ops.aten.from_file.default"
                node["inputs"] = [
                    {"name": "filename", "arg": {"as_string": str(path)}, "kind": 1},
                    {"name": "shared", "arg": {"as_bool": True}, "kind": 1},
                    {"name": "size", "arg": {"as_int": 16}, "kind": 1},
                    {"name": "dtype", "arg": {"as_scalar_type": 1}, "kind": 2},
                ]

    return _edit_pt2(pt2_bytes(_MakesBytes(), (64, 64)), point_at_file)


def pt2_with_guard_code(path: Path) -> bytes:
    """A plain tiny program whose ``guards_code`` (Python source ``ExportedProgram.module()`` runs) writes ``path``."""
    return _edit_pt2(pt2_bytes(tiny_net(), (64, 64)), lambda document: document.update(guards_code=[f"open({str(path)!r}, 'w').write('pwned') > 0"]))


def pt2_with_list_weights_config() -> bytes:
    """A real program whose weights config is a JSON list where an object belongs."""
    source = zipfile.ZipFile(io.BytesIO(pt2_bytes(tiny_net(), (64, 64))))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            odd = info.filename.endswith("weights/model_weights_config.json")
            archive.writestr(info, b"[1, 2, 3]" if odd else source.read(info.filename))
    return out.getvalue()


def pt2_with_zero_member(size: int) -> bytes:
    """A real program plus a deflated member of ``size`` zero bytes (about size/1000 bytes in the file)."""
    out = io.BytesIO(pt2_bytes(tiny_net(), (64, 64)))
    chunk = bytes(2**20)
    with (zipfile.ZipFile(out, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
          archive.open("archive/data/sample_inputs/padding.pt", "w", force_zip64=True) as member):
        for _ in range(size // len(chunk)):
            member.write(chunk)
    return out.getvalue()


# -- TorchScript ----------------------------------------------------------------------------------


class _ReadsAFile(nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        data = torch.from_file(self.path, True, 16, dtype=torch.uint8)
        data.fill_(88)
        return self.conv(x).mean((2, 3)) + data[:4].float()


def torchscript_reading_file(path: Path) -> bytes:
    """A scripted module whose forward maps ``path`` with ``torch.from_file(path, True, 16)`` and overwrites it."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(_ReadsAFile(str(path)).eval()), buffer)
    return buffer.getvalue()
