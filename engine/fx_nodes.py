"""What a torch.fx node does with its tensors, asked the same way by every graph rewrite (ReLU rules, batch-norm
folding, the twin, incremental occlusion)."""

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

INPLACE_FUNCTIONS = {F.relu_, torch.relu_, F.hardtanh_, F.leaky_relu_, F.elu_, F.threshold_, torch.sigmoid_, torch.tanh_, torch.clamp_}


def overwrites_input(node: fx.Node, root: nn.Module) -> bool:
    """Whether ``node`` writes into its input: a module or function flagged ``inplace``, an in-place function such as
    ``F.relu_``, or a tensor method such as ``relu_``."""
    if node.op == "call_module":
        return bool(getattr(root.get_submodule(node.target), "inplace", False))
    if node.op == "call_function":
        return node.target in INPLACE_FUNCTIONS or bool(node.kwargs.get("inplace", False))
    return node.op == "call_method" and str(node.target).endswith("_") and not str(node.target).startswith("_")


def reads_metadata(node: fx.Node) -> bool:
    """Whether ``node`` reads only a tensor's metadata (its shape, rank, dtype or device)."""
    return node.op == "call_function" and node.target is getattr and node.args[1] in ("ndim", "shape", "dtype", "device")
