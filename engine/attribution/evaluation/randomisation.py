"""Model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps",
https://arxiv.org/abs/1810.03292).

Layers are grouped (each block of a container, e.g. ``blocks.3``, else each top-level
module) and ordered from the output down. ``cascading`` randomises the groups one
after another, top first; ``independent`` randomises one group at a time. Each
stage is a fresh deep copy: the served model is only read, and the per-model caches
(folded, rule and channels-last copies) never see changed weights.
Re-initialisation: conv and linear weights He-normal (fan in), biases zero, batch
norms the identity; each group draws from its own seeded generator, so both modes
randomise a group identically.
"""

import copy
import dataclasses
from collections.abc import Iterator

import torch
from torch import nn

from engine.models import ConvLensModel


def wrapped(model: ConvLensModel, size: tuple[int, int], net: nn.Module) -> ConvLensModel:
    """A new model around ``net`` with ``model``'s spec and input size ``size``."""
    return ConvLensModel(dataclasses.replace(model.spec, input_size=tuple(size)), net).to(model.device)


def evaluation_copy(model: ConvLensModel, size: tuple[int, int]) -> ConvLensModel:
    """The trained model, deep-copied, with input size ``size``."""
    return wrapped(model, size, copy.deepcopy(model.net))


def parameter_groups(net: nn.Module) -> list[str]:
    """Module-name prefixes of the parametrised groups, from the output down to the input."""
    groups: list[str] = []
    for name, child in net.named_children():
        parts = list(child.named_children()) if isinstance(child, (nn.Sequential, nn.ModuleList)) else []
        for prefix, module in ([(f"{name}.{n}", m) for n, m in parts] if parts else [(name, child)]):
            if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
                groups.append(prefix)
    return groups[::-1]


PARAMETER_FREE = {"ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "GELU", "Sigmoid", "Tanh", "Identity", "Dropout",
                  "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "SelectAdaptivePool2d", "Flatten"}


def estimated_group_count(catalogue) -> int:
    """About how many groups :func:`parameter_groups` finds, read off a layer catalogue (no weights needed):
    each top-level layer, or each child of a top-level container, holding a layer of a parametrised type."""
    containers = {info.name for info in catalogue if "." not in info.name and info.type in ("Sequential", "ModuleList")}
    groups = set()
    for info in catalogue:
        parts = info.name.split(".")
        group = ".".join(parts[:2]) if parts[0] in containers and len(parts) > 1 else parts[0]
        if info.type not in PARAMETER_FREE and info.type not in ("Sequential", "ModuleList"):
            groups.add(group)
    return max(1, len(groups))


@torch.no_grad()
def randomise_group(net: nn.Module, group: str, seed: int) -> None:
    """Re-initialise every conv, linear and batch norm inside ``group`` (in place, on a copy)."""
    generator = torch.Generator().manual_seed(seed)
    for module in net.get_submodule(group).modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in = module.weight[0].numel()
            weight = torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
            module.weight.copy_(weight)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            if module.weight is not None:
                module.weight.fill_(1.0)
                module.bias.zero_()
            if module.running_mean is not None:
                module.running_mean.zero_()
                module.running_var.fill_(1.0)


def cascading(model: ConvLensModel, size: tuple[int, int], seed: int = 0) -> Iterator[tuple[str, ConvLensModel]]:
    """(group, copy with that group and every group above it randomised), top group first."""
    net = copy.deepcopy(model.net)
    for k, group in enumerate(parameter_groups(net)):
        randomise_group(net, group, seed + k)
        yield group, wrapped(model, size, copy.deepcopy(net))


def independent(model: ConvLensModel, size: tuple[int, int], seed: int = 0) -> Iterator[tuple[str, ConvLensModel]]:
    """(group, copy with only that group randomised), top group first."""
    for k, group in enumerate(parameter_groups(model.net)):
        net = copy.deepcopy(model.net)
        randomise_group(net, group, seed + k)
        yield group, wrapped(model, size, net)
