"""Guided-backprop and deconvnet backward rules on every ReLU of a network.

Both methods change only how gradients cross ReLUs (Springenberg et al. 2015,
https://arxiv.org/abs/1412.6806; Zeiler & Fergus 2014,
https://arxiv.org/abs/1311.2901):

- ``guided``: pass the gradient where it is positive AND the forward input
  opened the gate. For ReLU6 (and any clamp to ``[0, cap]``) the gate is
  ``0 < x < cap``: where the forward output is flat (above the cap) the
  ordinary gradient is zero as well, and guided backprop only ever removes
  gradient, never adds it.
- ``deconv``: pass only the positive part of the gradient, whatever the
  forward input was (the cap plays no part either).

Hooks on ``nn.ReLU`` modules miss functional ReLUs (``F.relu``,
``torch.relu``, ``F.relu6``, ``F.hardtanh(x, 0, 6)``, ``x.clamp(min=0)``) and
get in-place or reused modules wrong. So the network is traced with
``torch.fx`` into a copy where every ReLU-like call, module or functional,
becomes its own rule node; the copy shares the caller's weights and the
caller's model is never touched. What cannot be rewritten faithfully raises
:class:`UnsupportedModel` instead of giving a silently wrong map. Other
non-linearities (sigmoid, SiLU...) keep their ordinary gradient.
"""

import weakref
from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from engine.fx_nodes import overwrites_input
from engine.concurrency import build_once
from engine.errors import UnsupportedModel

Rule = Literal["guided", "deconv"]

_RELU_FUNCTIONS = {F.relu: None, F.relu_: None, torch.relu: None, torch.relu_: None, F.relu6: 6.0}
_RELU_METHODS = {"relu": None, "relu_": None}
_CLAMP_FUNCTIONS = {torch.clamp, torch.clip, torch.clamp_min}
_CLAMP_METHODS = {"clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_"}


class _RuleGate(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, cap: float | None, guided: bool) -> torch.Tensor:
        ctx.cap, ctx.guided = cap, guided
        if guided:
            ctx.save_for_backward(x)
        return x.clamp(0.0, cap) if cap is not None else x.clamp(min=0.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clamp(min=0.0)
        if ctx.guided:  # the ordinary ReLU/clamp gate, as one native kernel
            (x,) = ctx.saved_tensors
            if ctx.cap is None:
                grad = torch.ops.aten.threshold_backward(grad, x, 0.0)
            else:
                grad = torch.ops.aten.hardtanh_backward(grad, x, 0.0, ctx.cap)
        return grad, None, None


class RuleReLU(nn.Module):
    """``clamp(x, 0, cap)`` forward; the guided or deconvnet rule backward."""

    def __init__(self, rule: Rule, cap: float | None = None):
        super().__init__()
        self.rule, self.cap = rule, cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _RuleGate.apply(x, self.cap, self.rule == "guided")

    def extra_repr(self) -> str:
        return f"rule={self.rule}, cap={self.cap}"


class _OutputTracer(fx.Tracer):
    """An fx tracer that also records which node each module call returned."""

    def __init__(self):
        super().__init__()
        self.module_outputs: dict[str, list[fx.Node]] = {}

    def call_module(self, m, forward, args, kwargs):
        out = super().call_module(m, forward, args, kwargs)
        if isinstance(out, fx.Proxy):
            self.module_outputs.setdefault(self.path_of_module(m), []).append(out.node)
        return out


@dataclass
class RuleCopy:
    """A traced copy of a model with rule nodes, and where each module's output lives."""

    module: fx.GraphModule
    module_outputs: dict[str, list[fx.Node]]
    gates: int  # how many ReLU-like calls now carry the rule


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _relu_cap(node: fx.Node, root: nn.Module) -> tuple[bool, float | None]:
    """(is this call a ReLU-like gate, its upper cap or None)."""
    if node.op == "call_module":
        module = root.get_submodule(node.target)
        if isinstance(module, nn.ReLU):
            return True, None
        if isinstance(module, nn.Hardtanh) and module.min_val == 0:  # includes nn.ReLU6
            return True, float(module.max_val)
        return False, None
    if node.op == "call_function":
        if node.target in _RELU_FUNCTIONS:
            return True, _RELU_FUNCTIONS[node.target]
        if node.target is F.hardtanh:
            low, high = _arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)
            return _bounded(node, low, high)
        if node.target in _CLAMP_FUNCTIONS:
            return _bounded(node, _arg(node, 1, "min"), _arg(node, 2, "max"))
    if node.op == "call_method":
        if node.target in _RELU_METHODS:
            return True, None
        if node.target in _CLAMP_METHODS:
            return _bounded(node, _arg(node, 1, "min"), _arg(node, 2, "max"))
    return False, None


def _bounded(node: fx.Node, low, high) -> tuple[bool, float | None]:
    if isinstance(low, fx.Node) or isinstance(high, fx.Node):
        raise UnsupportedModel(f"{node.format_node()} clamps with tensor bounds; cannot tell whether it is a ReLU")
    if low != 0:
        return False, None
    return True, (float(high) if high is not None else None)


def _check_inplace_alias(node: fx.Node, source: fx.Node, order: dict[fx.Node, int]) -> None:
    """An in-place gate whose input is read again later cannot become an out-of-place rule node."""
    later = [user for user in source.users if user is not node and order[user] > order[node]]
    if later:
        raise UnsupportedModel(
            f"in-place activation {node.format_node()} mutates a tensor that is read elsewhere; "
            "cannot rewrite it faithfully for guided backprop/deconvnet"
        )


def _check_opaque_leaves(graph: fx.Graph, root: nn.Module) -> None:
    """Leaf modules fx does not trace into (composite torch.nn layers such as
    TransformerEncoderLayer, ReLU RNNs) could apply ReLUs the rewrite never sees."""
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        module = root.get_submodule(node.target)
        if any(True for _ in module.children()) or getattr(module, "nonlinearity", None) == "relu":
            raise UnsupportedModel(
                f"module {node.target!r} ({type(module).__name__}) hides its computation from tracing; "
                "ReLUs inside it could not be rewritten"
            )


def build_rule_copy(model: nn.Module, rule: Rule) -> RuleCopy:
    """Trace ``model`` and replace every ReLU-like call by a :class:`RuleReLU` node."""
    tracer = _OutputTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises many types for untraceable control flow
        raise UnsupportedModel(f"cannot trace the model to rewrite its ReLUs: {exc}") from exc
    _check_opaque_leaves(graph, model)
    order = {node: i for i, node in enumerate(graph.nodes)}
    gm = fx.GraphModule(model, graph)
    outputs = {path: list(nodes) for path, nodes in tracer.module_outputs.items()}
    gates = 0
    for node in list(graph.nodes):
        is_relu, cap = _relu_cap(node, model)
        if not is_relu:
            continue
        source = _arg(node, 0, "input", None)
        if source is None:
            source = node.kwargs.get("self")
        if not isinstance(source, fx.Node):
            raise UnsupportedModel(f"cannot find the input of {node.format_node()}")
        if overwrites_input(node, model):
            _check_inplace_alias(node, source, order)
        name = f"convlens_rule_{gates}"
        gm.add_submodule(name, RuleReLU(rule, cap))
        with graph.inserting_after(node):
            replacement = graph.call_module(name, (source,))
        node.replace_all_uses_with(replacement)
        for nodes in outputs.values():
            nodes[:] = [replacement if n is node else n for n in nodes]
        graph.erase_node(node)
        gates += 1
    graph.lint()
    gm.recompile()
    return RuleCopy(gm, outputs, gates)


_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict[str, RuleCopy]]" = weakref.WeakKeyDictionary()


def rule_copy(model: nn.Module, rule: Rule) -> RuleCopy:
    """The cached rule copy of ``model`` (built once per model and rule)."""
    return build_once(_CACHE.setdefault(model, {}), rule, lambda: build_rule_copy(model, rule))


class _StopAt(Exception):
    pass


class _Tap(fx.Interpreter):
    """Run a graph until ``node`` and return that node's value."""

    def __init__(self, module: fx.GraphModule, node: fx.Node):
        super().__init__(module)
        self.node = node
        self.value: torch.Tensor | None = None

    def run_node(self, n: fx.Node):
        result = super().run_node(n)
        if n is self.node:
            self.value = result
            raise _StopAt
        return result


def run_until_node(copy: RuleCopy, node: fx.Node, x: torch.Tensor) -> torch.Tensor:
    """The value of ``node`` when ``x`` goes through the rule copy (later nodes do not run)."""
    tap = _Tap(copy.module, node)
    try:
        tap.run(x)
    except _StopAt:
        return tap.value
    raise RuntimeError(f"node {node.name} was never reached")

