"""A traced copy of a network with each eval-mode batch norm folded into the conv before it.

``conv -> batch_norm`` computes ``gamma * (W*x + b - mean) / sqrt(var + eps) + beta``,
which is one conv with scaled weights. Folding removes one full pass over
every such activation forward and backward, so gradients with respect to the
input cost less. Results are equal up to float rounding; rarely, a unit that
sits within rounding of a ReLU threshold flips its gate, which changes a
gradient map locally by about 1e-4 of its peak. Saliency, the method meant
to match the plain gradient exactly, does not fold. The copy's folded convs
own new weight tensors (computed once per model and cached; zoo weights never
change); everything else is shared with, and nothing is written to, the
caller's model. Conv outputs no longer exist in the copy, so methods that
read a layer's activation use the model itself; the copy's ``folded_norms``
names, for each batch-norm module folded, the conv that now outputs what it did.
"""

import weakref

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from engine.fx_nodes import reads_metadata
from engine.concurrency import build_once


def _batch_norm_stats(node: fx.Node, root: nn.Module):
    """(running_mean, running_var, weight, bias, eps) of an eval-mode batch norm node, else None."""
    if node.op == "call_module":
        bn = root.get_submodule(node.target)
        if type(bn) is nn.BatchNorm2d and not bn.training and bn.track_running_stats:
            return bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.eps
        return None
    if node.op != "call_function" or node.target is not F.batch_norm:
        return None
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    args = {"weight": None, "bias": None, "training": False, "eps": 1e-5, **dict(zip(names, node.args)), **node.kwargs}
    if args["training"]:
        return None
    values = []
    for key in ("running_mean", "running_var", "weight", "bias"):
        value = args[key]
        if isinstance(value, fx.Node):
            if value.op != "get_attr":
                return None
            module_path, _, name = value.target.rpartition(".")
            value = getattr(root.get_submodule(module_path), name)
        values.append(value)
    return (*values, args["eps"])


def _norm_name(node: fx.Node) -> str | None:
    """The batch-norm module a batch-norm node runs: its own target, or whose running mean it reads."""
    if node.op == "call_module":
        return node.target
    mean = node.args[1] if len(node.args) > 1 else node.kwargs.get("running_mean")
    return mean.target.rpartition(".")[0] if isinstance(mean, fx.Node) and mean.op == "get_attr" else None


def fold_batch_norms(model: nn.Module) -> fx.GraphModule:
    """The traced, folded copy (raises whatever fx raises if the model cannot be traced)."""
    gm = fx.symbolic_trace(model)
    graph = gm.graph
    count = 0
    norms: dict[str, str] = {}
    for node in list(graph.nodes):
        source = node.args[0] if node.args else None
        if not (isinstance(source, fx.Node) and source.op == "call_module"):
            continue
        if any(user is not node and not reads_metadata(user) for user in source.users):
            continue  # the conv output itself is used elsewhere
        conv = gm.get_submodule(source.target)
        if type(conv) is not nn.Conv2d:
            continue
        stats = _batch_norm_stats(node, gm)
        if stats is None:
            continue
        mean, var, gamma, beta, eps = stats
        scale = (gamma if gamma is not None else torch.ones_like(var)) / torch.sqrt(var + eps)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, bias=True, padding_mode=conv.padding_mode,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
            fused.bias.copy_((bias - mean) * scale + (beta if beta is not None else 0.0))
        fused.requires_grad_(False).eval()
        name = f"convlens_folded_{count}"
        gm.add_submodule(name, fused)
        if (norm := _norm_name(node)) is not None:
            norms[norm] = name
        with graph.inserting_after(source):
            replacement = graph.call_module(name, (source.args[0],))
        node.replace_all_uses_with(replacement)
        graph.erase_node(node)
        source.replace_all_uses_with(replacement)  # shape/ndim checks read the same metadata
        graph.erase_node(source)
        count += 1
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    gm.folded_norms = norms
    return gm


_CACHE: "weakref.WeakKeyDictionary[nn.Module, nn.Module]" = weakref.WeakKeyDictionary()


def fold_if_possible(model: nn.Module) -> fx.GraphModule | None:
    """A new folded copy of ``model`` (uncached; tracing must hold the gate alone), or None when it has
    nothing to fold or cannot be traced."""
    try:
        copy = fold_batch_norms(model)
    except Exception:  # untraceable control flow: nothing to fold into
        return None
    found = any(name.startswith("convlens_folded_") for name, _ in copy.named_children())
    return copy if found else None


def folded(model: nn.Module) -> nn.Module:
    """The cached folded copy of ``model``; ``model`` itself when it has nothing to fold or cannot be traced."""
    return build_once(_CACHE, model, lambda: fold_if_possible(model) or model)
