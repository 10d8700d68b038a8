"""User model files -> networks the engine understands, without unpickling anything.

Three formats are read, each ending as an ``nn.Module``:

- ONNX, the format every framework exports to: checked with ``onnx.checker``,
  then converted by ``onnx2torch`` into a ``torch.fx`` GraphModule of torch.nn
  layers (``Clip(0, 6)`` becomes ``nn.ReLU6``, ``Conv`` ``nn.Conv2d``...), so
  the layer catalogue, the ReLU rules, batch-norm folding and incremental
  occlusion work on it as on the built-ins (:mod:`engine.models.onnx_fixes`
  replaces the converter's modules that tracing cannot read). Weights must be inside the file
  (external data would name paths on the server).
- ``torch.export`` programs (``.pt2``): the archive is checked to hold no
  pickle that ``torch.export.load`` would unpickle (it falls back to
  ``weights_only=False`` for some entries), loaded, and translated to ONNX
  once (:func:`export_program_to_onnx`), so it becomes the same fx graph,
  with the layer names an ONNX export of the original network has.
- TorchScript: ``torch.jit.load``, whose own unpickler builds only tensors and
  TorchScript objects (no Python global is imported). A scripted module hides
  its graph from ``torch.fx`` and its layers from hooks, so the methods that
  need either refuse it (:mod:`engine.models.support`).

A ``torch.save`` file (a pickle, zipped or not) is refused unread.
"""

import io
import json
import time
import zipfile
from typing import Literal

import torch
from torch import nn

from engine.errors import ModelRejected
from engine.models.onnx_fixes import make_traceable

ModelFormat = Literal["onnx", "torch_export", "torchscript"]
FORMATS: tuple[ModelFormat, ...] = ("onnx", "torch_export", "torchscript")

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = tuple(bytes([0x80, p]) for p in range(2, 6))
_ONNX_OPSET = 17  # the newest opset onnx2torch converts Reduce* ops for


def sniff_format(data: bytes) -> ModelFormat:
    """Which format ``data`` is in (ModelRejected for pickles and unknown files)."""
    if data.startswith(_PICKLE_PROTOCOLS):
        raise ModelRejected("pickled_model", "this is a Python pickle (torch.save); pickles are never loaded: export to ONNX, torch.export or TorchScript")
    if not data.startswith(_ZIP_MAGIC):
        return "onnx"
    names = _zip_names(data)
    if any(name.endswith("/archive_format") for name in names) and any(name.endswith("models/model.json") for name in names):
        return "torch_export"
    if any("/code/" in name for name in names) and any(name.endswith("/constants.pkl") for name in names):
        return "torchscript"
    if any(name.endswith("data.pkl") for name in names):
        raise ModelRejected("pickled_model", "this is a torch.save archive (a pickle); pickles are never loaded: export to ONNX, torch.export or TorchScript")
    raise ModelRejected("not_a_model", "a zip archive that is neither a torch.export program nor a TorchScript module")


def _zip_names(data: bytes) -> list[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise ModelRejected("not_a_model", f"a damaged zip archive: {exc}") from None


# -- ONNX ---------------------------------------------------------------------------------------


def read_onnx(data: bytes):
    """The checked ``onnx.ModelProto`` in ``data``."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelRejected("not_a_model", f"not an ONNX model (or a truncated one): {exc}") from None
    if not proto.graph.node:
        raise ModelRejected("not_a_model", "not an ONNX model: the file holds no graph")
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelRejected("invalid_onnx", f"weight {tensor.name!r} is stored outside the file (external data); send one self-contained file")
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelRejected("invalid_onnx", f"the ONNX checker refused the model: {str(exc).splitlines()[0]}") from None
    _inline_aliased_weights(proto)
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = [value.name for value in proto.graph.input if value.name not in initializers]
    if len(inputs) != 1 or len(proto.graph.output) != 1:
        raise ModelRejected("model_failed", f"an image model takes one input and gives one output; this one has {len(inputs)} inputs and {len(proto.graph.output)} outputs")
    return proto


def _inline_aliased_weights(proto) -> None:
    """Give weights that an exporter deduplicated (``Identity(initializer)``) their own initializer.

    PyTorch's exporter stores equal weights once and aliases the others through
    Identity nodes; onnx2torch reads conv and linear weights only from initializers.
    """
    graph = proto.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in weights:
            alias = type(weights[node.input[0]])()
            alias.CopyFrom(weights[node.input[0]])
            alias.name = node.output[0]
            graph.initializer.append(alias)
            weights[alias.name] = alias
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def onnx_network(data: bytes) -> nn.Module:
    """An ONNX file as a torch.fx GraphModule of torch.nn layers (onnx2torch)."""
    import onnx2torch

    proto = read_onnx(data)
    try:
        network = onnx2torch.convert(proto, attach_onnx_mapping=True).eval()
    except NotImplementedError as exc:  # onnx2torch's "Converter is not implemented (<operator>)"
        raise ModelRejected("unsupported_operator", f"the ONNX converter cannot translate this model: {exc}") from None
    except Exception as exc:  # a converter bug on an odd graph: still the file's problem to the client
        raise ModelRejected("model_failed", f"the ONNX model could not be converted: {type(exc).__name__}: {exc}") from None
    return make_traceable(network, proto)


# -- torch.export -------------------------------------------------------------------------------


def _check_pt2_archive(data: bytes) -> None:
    """Refuse any entry ``torch.export.load`` would unpickle beyond ``weights_only=True``.

    Weights and constants marked ``use_pickle``, custom or opaque objects and
    legacy ``.pt`` payloads go through ``torch.load(weights_only=False)`` or
    ``pickle.loads``; every other ``.pt`` entry (sample inputs) is first read
    with ``weights_only=True`` by the loader, which then falls back to a full
    unpickle on failure, so it is tried here with ``weights_only=True`` first.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            if name.endswith("_config.json") and ("/weights/" in name or "/constants/" in name):
                try:
                    config = json.loads(archive.read(name)).get("config", {})
                except ValueError:
                    raise ModelRejected("not_a_model", f"{name} in the archive is not JSON") from None
                for fqn, entry in config.items():
                    path = str(entry.get("path_name", ""))
                    if entry.get("use_pickle") or path.startswith(("custom_obj", "opaque_obj")):
                        raise ModelRejected("pickled_model", f"{fqn!r} is stored as a pickle in the archive; pickles are never loaded")
            elif name.endswith(".pt") or name.endswith(".pkl"):
                if "/weights/" in name or "/constants/" in name:
                    raise ModelRejected("pickled_model", f"{name}: a legacy pickled payload; save the program again with torch.export.save")
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:
                    raise ModelRejected("pickled_model", f"{name} in the archive is a pickle of more than tensors; it is never loaded") from None


def export_program_to_onnx(data: bytes) -> bytes:
    """A ``.pt2`` program translated to self-contained ONNX bytes (batch axis kept dynamic)."""
    import warnings

    _zip_names(data)
    _check_pt2_archive(data)
    try:
        program = torch.export.load(io.BytesIO(data))
    except ModelRejected:
        raise
    except Exception as exc:
        raise ModelRejected("model_failed", f"torch.export.load could not read the program: {type(exc).__name__}: {exc}") from None
    user_inputs = [spec for spec in program.graph_signature.input_specs if spec.kind.name == "USER_INPUT"]
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    if len(user_inputs) != 1:
        raise ModelRejected("model_failed", f"an image model takes one input; this program takes {len(user_inputs)}")
    value = placeholders[user_inputs[0].arg.name].meta.get("val")
    if value is None or value.dim() != 4:
        raise ModelRejected("model_failed", "the program's input is not an image batch (N, C, H, W)")
    example = torch.zeros([int(s) if isinstance(s, int) else 1 for s in value.shape])
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _module_tree(program), (example,), buffer, dynamo=False, opset_version=_ONNX_OPSET,
                training=torch.onnx.TrainingMode.PRESERVE,  # the program's module refuses .train(False)
                input_names=["input"], output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
    except Exception as exc:
        raise ModelRejected("model_failed", f"the program could not be translated to ONNX: {type(exc).__name__}: {exc}") from None
    return buffer.getvalue()


def _module_tree(program) -> nn.Module:
    """The program as a tree of the original submodules (``torch.export.unflatten``), so the ONNX
    exporter names each node by its module path (``features/features/0/Conv``) as it does for the original
    network; the flat ``program.module()`` where a program cannot be unflattened."""
    try:
        tree = torch.export.unflatten(program)
    except Exception:
        return program.module()
    tree.check_input_constraints = False  # the exporter's tracer cannot evaluate the symbolic batch bound
    return tree


# -- TorchScript --------------------------------------------------------------------------------


def torchscript_network(data: bytes) -> nn.Module:
    try:
        return torch.jit.load(io.BytesIO(data), map_location="cpu").eval()
    except Exception as exc:
        raise ModelRejected("model_failed", f"torch.jit.load could not read the module: {type(exc).__name__}: {exc}") from None


# -- entry point --------------------------------------------------------------------------------


def load_network(data: bytes, fmt: ModelFormat) -> nn.Module:
    """The network in ``data``; ``torch_export`` programs are translated to ONNX on the way."""
    if fmt == "onnx":
        return onnx_network(data)
    if fmt == "torch_export":
        return onnx_network(export_program_to_onnx(data))
    if fmt == "torchscript":
        return torchscript_network(data)
    raise ModelRejected("not_a_model", f"unknown model format {fmt!r}; one of {', '.join(FORMATS)}")


def timed(limit_seconds: float, what: str, fn, *args):
    """``fn(*args)``, refused (``model_too_slow``) when it took longer than ``limit_seconds``.

    Measured, not pre-empted: the call runs to its end in this thread, and
    its result is then discarded, so a slow model never enters the zoo.
    """
    start = time.perf_counter()
    result = fn(*args)
    took = time.perf_counter() - start
    if took > limit_seconds:
        raise ModelRejected("model_too_slow", f"{what} took {took:.1f} s, over the limit of {limit_seconds:g} s")
    return result
