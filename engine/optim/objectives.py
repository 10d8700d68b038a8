"""Objectives: losses to minimise, built from the activations of named layers.

An objective is a callable ``(features, image) -> scalar`` plus the set of
layer names it reads; ``features`` maps each name to that layer's output for
the current image (``"output"`` is the network's final output). Objectives
add, subtract, negate and scale, so a recipe such as
``-class_logit(281) + 1e-3 * l2()`` is one line (after Lucent's ``optvis``).
"""

from typing import Callable

import torch

Features = dict[str, torch.Tensor]
OUTPUT = "output"


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
