"""The optimisers ``render`` can use, by name.

Besides Adam and L-BFGS, two fixed-size gradient steps the papers use:
``sign`` is steepest descent under the L-infinity norm (FGSM and PGD,
Goodfellow et al. 2015; Madry et al. 2018); ``normalized`` divides the
gradient by its mean absolute value, so every step moves pixels by about the
same amount whatever the layer's scale (DeepDream, Mordvintsev et al. 2015).
"""

from typing import Callable, Literal

import torch

OptimizerName = Literal["adam", "lbfgs", "sign", "normalized"]


class FixedStepDescent(torch.optim.Optimizer):
    """``p -= lr * direction(grad)``: a step whose size does not depend on the loss's scale."""

    def __init__(self, params, lr: float, direction: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__(params, {"lr": lr})
        self.direction = direction

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.sub_(group["lr"] * self.direction(p.grad))


def sign_descent(params, lr: float) -> FixedStepDescent:
    """``p -= lr * sign(grad)``."""
    return FixedStepDescent(params, lr, torch.sign)


def normalized_descent(params, lr: float) -> FixedStepDescent:
    """``p -= lr * grad / mean(|grad|)``."""
    return FixedStepDescent(params, lr, lambda grad: grad / grad.abs().mean().clamp_min(1e-12))


def make_optimizer(name: OptimizerName, params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr, max_iter=1, history_size=50)
    if name == "sign":
        return sign_descent(params, lr)
    if name == "normalized":
        return normalized_descent(params, lr)
    raise ValueError(f"unknown optimizer {name!r}")
