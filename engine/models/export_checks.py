"""What a ``torch.export`` archive (``.pt2``) may hold, checked before anything in it runs.

A ``.pt2`` is a zip of JSON (the graph, the weights' configs), raw tensor
bytes and a few pickles. Three things in it are code or act like code:

- pickles, which ``torch.export.load`` unpickles beyond ``weights_only=True``
  for some entries: :func:`check_no_pickles` refuses them unread;
- the graph, whose nodes may call any registered operator, ``aten::from_file``
  (read or overwrite any file) included: :func:`check_program` allows only the
  pure tensor operations CNNs are made of, by name, and refuses every other
  node (higher-order operators, submodule and attribute references, custom
  namespaces, writes into ``out=`` arguments);
- ``guards_code``: Python source that ``ExportedProgram.module()`` compiles
  into the module and runs on every call. It is dropped after loading
  (:mod:`engine.models.formats`), never run.

And a zip may inflate far beyond its size: :func:`check_inflated_size` reads
the members' declared sizes first (zipfile and torch's reader both stop at them).
"""

import io
import json
import operator
import zipfile

import torch

from engine.errors import ModelRejected

ALLOWED_ATEN = frozenset({
    # layers
    "conv1d", "conv2d", "convolution", "_convolution", "conv_transpose2d", "linear", "addmm", "mm", "bmm", "matmul", "t",
    "batch_norm", "_native_batch_norm_legit_no_training", "layer_norm", "native_layer_norm", "group_norm", "native_group_norm",
    "instance_norm", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d",
    "adaptive_max_pool2d", "dropout", "scaled_dot_product_attention",
    # activations and elementwise arithmetic
    "relu", "relu6", "hardtanh", "hardswish", "hardsigmoid", "sigmoid", "silu", "gelu", "tanh", "leaky_relu", "elu", "selu",
    "celu", "prelu", "_prelu_kernel", "softplus", "mish", "clamp", "clamp_min", "clamp_max", "threshold",
    "add", "sub", "rsub", "mul", "div", "neg", "pow", "sqrt", "rsqrt", "exp", "log", "abs", "reciprocal", "erf",
    "minimum", "maximum", "floor", "ceil", "round", "sign", "where", "eq", "ne", "lt", "le", "gt", "ge",
    "logical_not", "logical_and", "logical_or",
    # reductions
    "mean", "sum", "amax", "amin", "max", "min", "var", "std", "var_mean", "softmax", "_softmax", "log_softmax",
    "_log_softmax", "linalg_vector_norm",
    # shapes, views and copies of tensors the graph already holds
    "view", "reshape", "_unsafe_view", "flatten", "permute", "transpose", "contiguous", "clone", "cat", "concat", "stack",
    "chunk", "split", "split_with_sizes", "unbind", "select", "slice", "narrow", "squeeze", "unsqueeze", "expand",
    "expand_as", "repeat", "pixel_shuffle", "pad", "constant_pad_nd", "upsample_nearest2d", "upsample_bilinear2d",
    "alias", "detach", "to", "_to_copy", "type_as", "sym_size", "sym_numel",
    # checks export inserts
    "_assert_tensor_metadata", "_assert_scalar",
})
ALLOWED_PYTHON = frozenset({
    operator.getitem, operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod, operator.neg,
})


def check_inflated_size(data: bytes, max_bytes: int) -> None:
    """Refuse an archive whose members inflate to more than ``max_bytes`` in all (naming the largest)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
    total = sum(member.file_size for member in members)
    if total > max_bytes:
        largest = max(members, key=lambda member: member.file_size)
        raise ModelRejected(
            "model_too_large",
            f"the archive inflates to {total:,} bytes ({largest.filename} alone {largest.file_size:,}), over the limit of {max_bytes:,} bytes",
        )


def check_no_pickles(data: bytes) -> None:
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
                for fqn, entry in _json_object(archive, name, "config").items():
                    if not isinstance(entry, dict):
                        raise ModelRejected("not_a_model", f"{name} in the archive: the entry of {fqn!r} is not a JSON object")
                    path = str(entry.get("path_name", ""))
                    if entry.get("use_pickle") or path.startswith(("custom_obj", "opaque_obj")):
                        raise ModelRejected("pickled_model", f"{fqn!r} is stored as a pickle in the archive; pickles are never loaded")
            elif name.endswith((".pt", ".pkl")):
                if "/weights/" in name or "/constants/" in name:
                    raise ModelRejected("pickled_model", f"{name}: a legacy pickled payload; save the program again with torch.export.save")
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception:
                    raise ModelRejected("pickled_model", f"{name} in the archive is a pickle of more than tensors; it is never loaded") from None


def _json_object(archive: zipfile.ZipFile, name: str, key: str) -> dict:
    """The JSON object under ``key`` in member ``name`` (``not_a_model`` when it is not one)."""
    try:
        document = json.loads(archive.read(name))
    except ValueError:
        raise ModelRejected("not_a_model", f"{name} in the archive is not JSON") from None
    found = document.get(key, {}) if isinstance(document, dict) else None
    if not isinstance(found, dict):
        raise ModelRejected("not_a_model", f"{name} in the archive is not a JSON object with an object {key!r}")
    return found


def check_program(program: "torch.export.ExportedProgram") -> None:
    """Refuse a program any of whose nodes is off the allowlist, naming the first."""
    for node in program.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op != "call_function":
            raise ModelRejected("unsupported_operator", f"node {node.name!r} is a {node.op} ({node.target}); a program may only call tensor operators")
        reason = _refusal(node.target)
        if reason is not None:
            raise ModelRejected("unsupported_operator", f"node {node.name!r} calls {_name(node.target)}: {reason}")


def _refusal(target) -> str | None:
    """Why ``target`` may not run, or None when it may."""
    if isinstance(target, torch._ops.OpOverload):
        if target.namespace != "aten":
            return f"operators of namespace {target.namespace!r} are not accepted"
        name = target._opname
        if name not in ALLOWED_ATEN and not (name.endswith("_") and name[:-1] in ALLOWED_ATEN and not name.startswith("_")):
            return "not one of the pure tensor operators accepted in registered models"
        if any(arg.kwarg_only and arg.alias_info is not None and arg.alias_info.is_write for arg in target._schema.arguments):
            return "it writes into an out= argument"
        return None
    if target in ALLOWED_PYTHON:
        return None
    return "not a tensor operator (higher-order operators and Python functions are not accepted)"


def _name(target) -> str:
    name = getattr(target, "name", None)  # operators (aten::from_file, higher-order ones) name themselves
    return name() if callable(name) else getattr(target, "__name__", repr(target))
