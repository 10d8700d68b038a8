"""Objectives: losses to minimise, built from the activations of named layers.

An objective is a callable ``(features, image) -> scalar`` plus the set of
layer names it reads; ``features`` maps each name to that layer's output for
the current image (``"output"`` is the network's final output). Objectives
add, subtract, negate and scale, so a recipe such as
``-class_logit(281) + 1e-3 * l2()`` is one line (after Lucent's ``optvis``).
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import Callable, Sequence

import torch

Features = dict[str, torch.Tensor]
OUTPUT = "output"
INPUT_OF = "input:"  # a feature named "input:<layer>" is that layer's input rather than its output


class Objective:
    def __init__(self, fn: Callable[[Features, torch.Tensor], torch.Tensor], layers=(), name: str = ""):
        self.fn = fn
        self.layers = frozenset(layers)
        self.name = name or getattr(fn, "__name__", "objective")

    def __call__(self, features: Features, image: torch.Tensor) -> torch.Tensor:
        return self.fn(features, image)

    def __add__(self, other: "Objective") -> "Objective":
        if isinstance(other, (int, float)):
            return Objective(lambda f, x: self(f, x) + other, self.layers, self.name)
        return Objective(lambda f, x: self(f, x) + other(f, x), self.layers | other.layers, f"{self.name} + {other.name}")

    __radd__ = __add__

    def __neg__(self) -> "Objective":
        return -1.0 * self

    def __sub__(self, other: "Objective") -> "Objective":
        return self + (-other)

    def __rsub__(self, other) -> "Objective":
        return (-self) + other

    def __mul__(self, weight: float) -> "Objective":
        if not isinstance(weight, (int, float)):
            raise TypeError("objectives scale by numbers only")
        return Objective(lambda f, x: weight * self(f, x), self.layers, f"{weight:g}*{self.name}")

    __rmul__ = __mul__


# -- the objectives recipes use (each is minimised; "maximise X" is ``-X`` built in) -------


def class_logit(index: int | Sequence[int]) -> Objective:
    """Maximise the unnormalised score of class ``index`` (or of one class per image) (Simonyan et al. 2014)."""

    def fn(f: Features, image: torch.Tensor) -> torch.Tensor:
        logits = f[OUTPUT]
        rows = torch.as_tensor(index, device=logits.device).expand(logits.shape[0])
        return -logits.gather(1, rows.view(-1, 1)).mean()

    return Objective(fn, {OUTPUT}, f"class_logit({index})")


def class_log_prob(index: int | Sequence[int]) -> Objective:
    """Maximise the log-softmax probability of class ``index`` (or of one class per image)."""

    def fn(f: Features, image: torch.Tensor) -> torch.Tensor:
        log_probs = f[OUTPUT].log_softmax(-1)
        rows = torch.as_tensor(index, device=log_probs.device).expand(log_probs.shape[0])
        return -log_probs.gather(1, rows.view(-1, 1)).mean()

    return Objective(fn, {OUTPUT}, f"class_log_prob({index})")


def layer_mean(layer: str) -> Objective:
    """Maximise the mean activation of a whole layer."""
    return Objective(lambda f, x: -f[layer].mean(), {layer}, f"layer({layer})")


def channel(layer: str, index: int) -> Objective:
    """Maximise the mean activation of one channel (or one unit of a vector layer)."""
    return Objective(lambda f, x: -f[layer][:, index].mean(), {layer}, f"channel({layer}:{index})")


def neuron(layer: str, index: int, y: int | None = None, x: int | None = None) -> Objective:
    """Maximise one channel at one spatial position (the centre unless ``y``/``x`` are given)."""

    def fn(f: Features, image: torch.Tensor) -> torch.Tensor:
        maps = f[layer][:, index]
        row = maps.shape[-2] // 2 if y is None else y
        col = maps.shape[-1] // 2 if x is None else x
        return -maps[:, row, col].mean()

    return Objective(fn, {layer}, f"neuron({layer}:{index})")


def deepdream(layer: str) -> Objective:
    """Amplify whatever ``layer`` already sees: maximise the mean squared activation,
    whose gradient is proportional to the activation (Mordvintsev et al. 2015)."""
    return Objective(lambda f, x: -f[layer].pow(2).mean(), {layer}, f"deepdream({layer})")


def l2(center: float | torch.Tensor = 0.0) -> Objective:
    """Penalise the image's mean squared distance from ``center`` (a value or a colour)."""
    return Objective(lambda f, x: (x - center).pow(2).mean(), (), "l2")


def diversity(layer: str) -> Objective:
    """Push a batch of images apart: the mean pairwise cosine similarity of their Gram matrices at
    ``layer`` (minimised), so N images show N different facets of one unit (Olah et al. 2017)."""

    def fn(f: Features, image: torch.Tensor) -> torch.Tensor:
        acts = f[layer]
        n = acts.shape[0]
        if n < 2:
            return acts.new_zeros(())
        flat = acts.flatten(2)
        grams = torch.nn.functional.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
        similarity = grams @ grams.T
        return (similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1))

    return Objective(fn, {layer}, f"diversity({layer})")


class ChannelMoments(torch.autograd.Function):
    """Mean and (biased) variance over axis ``dim``, with a backward pass of one fused
    multiply-add: ``torch.var_mean`` and its autograd took about 1.6 times as long on the CPU."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int = -1):
        n = x.shape[dim]
        mean = x.sum(dim) / n
        # vector_norm is fast along a contiguous axis only (about 10x slower along the positions of a
        # channels-last map, where squaring and summing is 4x faster than it)
        squares = torch.linalg.vector_norm(x, dim=dim).square() if x.stride(dim) == 1 else x.square().sum(dim)
        var = (squares / n - mean.square()).clamp_min(0)
        ctx.save_for_backward(x, mean)
        ctx.dim = dim
        return mean, var

    @staticmethod
    def backward(ctx, grad_mean: torch.Tensor, grad_var: torch.Tensor):
        x, mean = ctx.saved_tensors
        dim = ctx.dim
        n = x.shape[dim]
        slope = (2 / n) * grad_var
        return torch.addcmul((grad_mean / n - slope * mean).unsqueeze(dim), slope.unsqueeze(dim), x), None


def channel_moments(feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and channel, the mean and variance over the positions of an (N, C, H, W) feature
    map, reduced along whichever axis its memory layout makes contiguous (as a view, never a copy)."""
    if feature.dim() == 4 and feature.is_contiguous(memory_format=torch.channels_last) and not feature.is_contiguous():
        return ChannelMoments.apply(feature.permute(0, 2, 3, 1).flatten(1, 2), 1)
    return ChannelMoments.apply(feature.flatten(2), -1)


def natural_statistics(norms: dict[str, torch.nn.BatchNorm2d], folded_into: Mapping[str, str] = MappingProxyType({})) -> Objective:
    """Keep the input of every batch norm in ``norms`` (name -> module) distributed as in training: per
    image and channel, the squared distance of its mean and standard deviation from the running ones, in
    running standard deviations, averaged over channels and layers. Yin et al. 2020's DeepInversion
    feature-distribution prior (https://arxiv.org/abs/1912.08795), per image instead of per batch.
    A norm named in ``folded_into`` (norm -> the feature that now holds its output, in a network
    whose norms were folded into their convs) is measured on that output instead, its input in
    running standard deviations times the norm's weight plus its bias: the same distances."""
    # per channel, all layers in one vector: where the moments are centred, their unit, the norm's
    # eps in those units, and a weight making every layer count the same (one small op per step for
    # all layers instead of ten per layer)
    names, centre, unit, floor, weight = [], [], [], [], []
    for name, norm in norms.items():
        spread = (norm.running_var + norm.eps).sqrt()
        if name in folded_into:
            gamma = norm.weight if norm.weight is not None else torch.ones_like(spread)
            names.append(folded_into[name])
            centre.append(norm.bias if norm.bias is not None else torch.zeros_like(spread))
            unit.append(gamma.abs())
        else:
            names.append(INPUT_OF + name)
            centre.append(norm.running_mean)
            unit.append(spread)
        floor.append(norm.eps / spread.square())
        weight.append(torch.full_like(spread, 1 / (norm.num_features * len(norms))))
    centre, unit, floor, weight = (torch.cat(parts).detach() for parts in (centre, unit, floor, weight))

    def fn(f: Features, image: torch.Tensor) -> torch.Tensor:
        moments = [channel_moments(f[name]) for name in names]
        mean = torch.cat([m for m, _ in moments], dim=1)
        var = torch.cat([v for _, v in moments], dim=1)
        distance = ((mean - centre) / unit).square() + ((var / unit.square() + floor).sqrt() - 1).square()
        return (distance * weight).sum(1).mean()

    return Objective(fn, set(names), "natural_statistics")
