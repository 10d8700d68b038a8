"""Patterns that ONNX exporters write out op by op, fused back into one call in a private trace.

The exporter writes GELU as ``x * (erf(x / sqrt(2)) + 1) * 0.5`` and a linear
layer as ``MatMul`` then ``Add``; onnx2torch keeps each op apart, so an
activation (ConvNeXt's MLP runs on its largest ones) is read and written five
times for a GELU and twice for a linear layer. ``F.gelu`` and ``F.linear``
compute the same functions in one pass, up to float rounding. The caller's
graph is never changed: this rewrites a trace of its own.
"""

import math

import torch
import torch.fx as fx
import torch.nn.functional as F


def _constant(gm: fx.GraphModule, node) -> torch.Tensor | None:
    if isinstance(node, fx.Node) and node.op == "get_attr":
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        return value if isinstance(value, torch.Tensor) else None
    return None


def _scalar(gm: fx.GraphModule, node, expected: float) -> bool:
    value = _constant(gm, node)
    return value is not None and value.numel() == 1 and abs(float(value) - expected) <= 1e-6 * abs(expected)


def _only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def _other(node: fx.Node, one) -> object:
    """The operand of binary ``node`` that is not ``one`` (None unless exactly one operand is ``one``)."""
    a, b = node.args[:2] if len(node.args) >= 2 else (None, None)
    if node.kwargs or (a is one) == (b is one):
        return None
    return b if a is one else a


def _calls(node, target) -> bool:
    return isinstance(node, fx.Node) and node.op == "call_function" and node.target is target


def _gelu_input(gm: fx.GraphModule, erf: fx.Node) -> tuple[fx.Node, list[fx.Node]] | None:
    """(x, the pattern's nodes in order) when ``erf`` is the heart of ``x * (erf(x / sqrt 2) + 1) * 0.5``."""
    div = erf.args[0]
    if not (_calls(div, torch.div) and len(div.args) == 2 and not div.kwargs and len(div.users) == 1):
        return None
    x = div.args[0]
    if not _scalar(gm, div.args[1], math.sqrt(2)):
        return None
    plus = _only_user(erf)
    if not (_calls(plus, torch.add) and _scalar(gm, _other(plus, erf), 1.0)):
        return None
    times = _only_user(plus)
    if not (_calls(times, torch.mul) and _other(times, plus) is x):
        return None
    half = _only_user(times)
    if not (_calls(half, torch.mul) and _scalar(gm, _other(half, times), 0.5)):
        return None
    return x, [div, erf, plus, times, half]


def _linear_parts(gm: fx.GraphModule, matmul: fx.Node) -> tuple[fx.Node, fx.Node, fx.Node, list[fx.Node]] | None:
    """(x, weight, bias, the pattern's nodes) when ``matmul`` is ``x @ weight`` then ``+ bias`` (constants)."""
    if len(matmul.args) != 2 or matmul.kwargs:
        return None
    x, weight = matmul.args
    add = _only_user(matmul)
    bias = _other(add, matmul) if _calls(add, torch.add) else None
    w, b = _constant(gm, weight), _constant(gm, bias)
    if w is None or b is None or w.dim() != 2 or b.shape != (w.shape[1],):
        return None
    return x, weight, bias, [matmul, add]


def fuse_exported_patterns(gm: fx.GraphModule) -> fx.GraphModule:
    """Rewrite ``gm`` (a trace of its own) with each exported GELU and MatMul + Add as one call."""
    graph = gm.graph
    for node in list(graph.nodes):
        if _calls(node, torch.erf) and (found := _gelu_input(gm, node)) is not None:
            x, pattern = found
            with graph.inserting_before(pattern[-1]):
                fused = graph.call_function(F.gelu, (x,))
        elif _calls(node, torch.matmul) and (found := _linear_parts(gm, node)) is not None:
            x, weight, bias, pattern = found
            with graph.inserting_before(pattern[-1]):
                fused = graph.call_function(F.linear, (x, graph.call_method("t", (weight,)), bias))
        else:
            continue
        pattern[-1].replace_all_uses_with(fused)
        for done in reversed(pattern):
            graph.erase_node(done)
    gm.recompile()
    return gm
