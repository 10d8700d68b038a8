"""User model files -> networks the engine understands, without unpickling anything.

Two formats are read, each ending as an ``nn.Module``:

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

A ``torch.save`` file (a pickle, zipped or not) is refused unread, and so is
TorchScript (``format_not_supported``). A TorchScript archive is source code
that ``torch.jit.load`` compiles (the ``code/`` entries) before any graph
exists to check; the compiled module is a tree of methods that call one
another, loop and branch on tensor values and may reach any aten operator
(``from_file``, ``save``), custom classes included, through calls resolved at
run time. An allowlist would have to follow every method and branch, including
ones only some inputs reach, and trust the compiler with hostile source first:
it cannot be made airtight. ``torch.export`` and ONNX give one flat graph of
operators, fixed at export, that is checked node by node before anything runs
(:mod:`engine.models.export_checks`, :mod:`engine.models.onnx_checks`).
"""

import io
import time
import zipfile
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from engine.errors import ModelRejected
from engine.models.export_checks import check_inflated_size
from engine.models.onnx_fixes import make_traceable

ModelFormat = Literal["onnx", "torch_export"]

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = tuple(bytes([0x80, p]) for p in range(2, 6))
_ONNX_OPSET = 17  # the newest opset onnx2torch converts Reduce* ops for


def sniff_format(data: bytes) -> ModelFormat:
    """Which format ``data`` is in (ModelRejected for pickles, TorchScript and unknown files)."""
    if data.startswith(_PICKLE_PROTOCOLS):
        raise ModelRejected("pickled_model", "this is a Python pickle (torch.save); pickles are never loaded: export to ONNX or torch.export")
    names = _zip_names(data) if data.startswith(_ZIP_MAGIC) else None
    for file_format in FILE_FORMATS.values():
        if file_format.recognises(names):
            return file_format.name
    if any("/code/" in name for name in names) and any(name.endswith("/constants.pkl") for name in names):
        raise ModelRejected(
            "format_not_supported",
            "this is a TorchScript module, which is not accepted: its code is compiled and can call any operator, so it cannot "
            "be checked before it runs; export the network with torch.export (torch.export.save) or to ONNX instead",
        )
    if any(name.endswith("data.pkl") for name in names):
        raise ModelRejected("pickled_model", "this is a torch.save archive (a pickle); pickles are never loaded: export to ONNX or torch.export")
    raise ModelRejected("not_a_model", "a zip archive that is not a torch.export program")


def _zip_names(data: bytes) -> list[str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        raise ModelRejected("not_a_model", f"a damaged zip archive: {exc}") from None


# -- ONNX ---------------------------------------------------------------------------------------


def read_onnx(data: bytes, max_nodes: int | None = None):
    """The checked ``onnx.ModelProto`` in ``data`` (:mod:`engine.models.onnx_checks`: at most ``max_nodes``
    nodes when given, no external data anywhere, allowlisted operators only)."""
    import onnx
    from google.protobuf.message import DecodeError

    from engine.models import onnx_checks

    try:
        proto = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelRejected("not_a_model", f"not an ONNX model (or a truncated one): {exc}") from None
    if not proto.graph.node:
        raise ModelRejected("not_a_model", "not an ONNX model: the file holds no graph")
    if max_nodes is not None:
        onnx_checks.check_node_count(proto, max_nodes)
    onnx_checks.check_no_external_data(proto)
    onnx_checks.check_operators(proto)
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


def read_program(data: bytes) -> "torch.export.ExportedProgram":
    """The ``.pt2`` program in ``data``, checked (:mod:`engine.models.export_checks`): no pickle unpickled,
    every node allowlisted, and its guard code (Python source ``module()`` would run) dropped."""
    from engine.models.export_checks import check_no_pickles, check_program

    _zip_names(data)
    check_no_pickles(data)
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as exc:
        raise ModelRejected("model_failed", f"torch.export.load could not read the program: {type(exc).__name__}: {exc}") from None
    program._guards_code = []
    check_program(program)
    return program


def export_program_to_onnx(data: bytes) -> bytes:
    """A ``.pt2`` program translated to self-contained ONNX bytes (batch axis kept dynamic)."""
    import warnings

    program = read_program(data)
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
        return program.module(check_guards=False)
    tree.check_input_constraints = False  # the exporter's tracer cannot evaluate the symbolic batch bound
    return tree


# -- the formats ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileFormat:
    """A kind of model file the service accepts: how it is recognised, and how it becomes the ONNX the service keeps."""

    name: ModelFormat
    recognises: Callable[[list[str] | None], bool]  # from the zip's member names (None: not a zip)
    to_onnx: Callable[[bytes, int], bytes]  # (the file, the most it may inflate to) -> the ONNX bytes stored and loaded
    translated: bool  # whether that ONNX is a translation, stored beside the file


def _program_to_onnx(data: bytes, max_bytes: int) -> bytes:
    check_inflated_size(data, max_bytes)
    return export_program_to_onnx(data)


FILE_FORMATS: dict[str, FileFormat] = {
    "onnx": FileFormat("onnx", lambda names: names is None, lambda data, _max_bytes: data, translated=False),
    "torch_export": FileFormat(
        "torch_export",
        lambda names: names is not None and any(n.endswith("/archive_format") for n in names) and any(n.endswith("models/model.json") for n in names),
        _program_to_onnx, translated=True,
    ),
}


def load_network(data: bytes, fmt: ModelFormat, max_bytes: int = 2**31) -> nn.Module:
    """The network in a file of format ``fmt``, as the fx graph of its ONNX (a program is translated on the way)."""
    return onnx_network(FILE_FORMATS[fmt].to_onnx(data, max_bytes))


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
