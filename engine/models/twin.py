"""A faster twin of a network for gradient ascent on its outputs: batch norms folded into the
convs before them (:mod:`engine.models.folding`), every weight and activation laid out
channels-last (oneDNN's and cuDNN's faster convolutions).

It computes the same function up to float rounding; a forward and backward pass of
efficientnet_lite0 at 224 px took about 30% less time on the CPU (bench/README.md). Its
layers are the folded graph's, so only objectives on the network's output run on it, and a
folded batch norm's statistics are read from the conv that now outputs what the norm did
(``folded_norms``). Made once per model and cached; the served model is never changed.
"""

import copy
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
import torch.fx as fx

from engine.concurrency import build_once
from engine.fx_nodes import INPLACE_FUNCTIONS, overwrites_input, reads_metadata
from engine.models.folding import fold_if_possible
from engine.models.wrapper import ConvLensModel


@dataclass(frozen=True)
class Twin:
    model: ConvLensModel
    folded_norms: Mapping[str, str]  # batch norm -> the twin's conv that now outputs what it did


_CACHE: "weakref.WeakKeyDictionary[ConvLensModel, Twin]" = weakref.WeakKeyDictionary()


def out_of_place(net: fx.GraphModule) -> bool:
    """Make the in-place modules and functions of ``net`` write new tensors (an in-place activation after
    a folded conv would overwrite the conv's output, which the norm statistics read); False, with
    nothing changed, where that would change what the network computes: an in-place tensor method, or
    a later operation reading the overwritten input."""
    nodes = list(net.graph.nodes)
    order = {node: k for k, node in enumerate(nodes)}
    changed = [node for node in nodes if overwrites_input(node, net)]
    for node in changed:
        source = node.args[0] if node.args else None
        later = isinstance(source, fx.Node) and any(
            order[user] > order[node] and not reads_metadata(user) for user in source.users if user is not node
        )
        if node.op == "call_method" or node.target in INPLACE_FUNCTIONS or later:  # no flag to turn off
            return False
    for node in changed:
        if node.op == "call_module":
            net.get_submodule(node.target).inplace = False
        else:
            node.kwargs = {**node.kwargs, "inplace": False}
    net.recompile()
    return True


def ascent_twin(model: ConvLensModel) -> Twin | None:
    """The cached twin of ``model``; None when its network has no batch norm to fold, cannot be traced,
    or overwrites tensors in place in a way the twin cannot undo (:func:`out_of_place`)."""
    def build() -> Twin | None:
        net = fold_if_possible(model.net)
        if net is None:
            return None
        # the fold shares its unfolded modules with the served network: lay out and rewrite a copy
        fast = copy.deepcopy(net).to(memory_format=torch.channels_last)
        if not out_of_place(fast):
            return None
        # a new wrapper makes its preprocessing buffers on the CPU: put them where the network is
        return Twin(ConvLensModel(model.spec, fast).to(model.device), MappingProxyType(dict(net.folded_norms)))

    return build_once(_CACHE, model, build)
