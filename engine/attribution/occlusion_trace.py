"""The network as the occlusion plan runs it: a ``torch.fx`` trace of its own, made faster.

The trace shares the model's weights, except that its convolutions hold
channels-last copies of theirs, and exported GELUs and linear layers are fused
back into one call (:mod:`engine.attribution.fusions`): the same function up to
float rounding. Made once per model and cached; the caller's model is never
touched.
"""

import weakref

import torch
import torch.fx as fx
from torch import nn

from engine.attribution.fusions import fuse_exported_patterns
from engine.concurrency import build_once


class Unsupported(Exception):
    """The network cannot be split into local operations; use brute force."""


_TRACES: "weakref.WeakKeyDictionary[nn.Module, fx.GraphModule | Unsupported]" = weakref.WeakKeyDictionary()


def traced(model: nn.Module) -> fx.GraphModule:
    """The cached fx trace of ``model`` with channels-last copies of its convolutions' weights (sharing every
    other tensor) and exported GELUs and linear layers fused (:mod:`engine.attribution.fusions`); raises
    Unsupported if it cannot be traced."""
    def build() -> fx.GraphModule | Unsupported:
        try:
            return fuse_exported_patterns(_with_channels_last_convs(fx.symbolic_trace(model)))
        except Unsupported as exc:
            return exc
        except Exception as exc:  # fx raises many types for untraceable control flow
            return Unsupported(f"cannot trace the model: {exc}")

    found = build_once(_TRACES, model, build)
    if isinstance(found, Unsupported):
        raise found
    return found


def _with_channels_last_convs(gm: fx.GraphModule) -> fx.GraphModule:
    """Give each convolution of ``gm`` a channels-last copy of its weight: on channels-last activations oneDNN
    and cuDNN then run without reordering either per call (same numbers up to float rounding). The trace's
    module containers are its own (fx copies the paths), so the caller's modules are never touched."""
    for node in gm.graph.nodes:
        if node.op != "call_module" or type(conv := gm.get_submodule(node.target)) is not nn.Conv2d:
            continue
        fast = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, bias=False, padding_mode=conv.padding_mode, device="meta",
        )
        fast.weight = nn.Parameter(conv.weight.detach().contiguous(memory_format=torch.channels_last), requires_grad=False)
        fast.bias = conv.bias
        owner, _, name = node.target.rpartition(".")
        setattr(gm.get_submodule(owner), name, fast.eval())
    return gm
