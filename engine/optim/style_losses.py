"""Losses of image reconstruction and neural style, as composable Objectives.

- ``gram_matrix``: channel correlations of a feature map, averaged over positions
  (Gatys et al. 2015, "Texture synthesis using convolutional neural networks").
  Dividing by H*W makes Gram matrices of pictures of different sizes comparable.
- ``content_loss``: mean squared feature difference (Gatys et al. 2016).
- ``relative_feature_loss``: ||f(x) - f0||^2 / ||f0||^2 (Mahendran & Vedaldi 2015).
- ``style_loss``: weighted squared Gram differences over layers, summed over
  one or several style targets.
- ``tv_norm`` (and the ``total_variation`` objective): mean over pixels of (dx^2 + dy^2)^(beta/2), the TV^beta
  regulariser of Mahendran & Vedaldi 2015.
"""

from typing import Mapping, Sequence

import torch

from engine.optim.objectives import Objective

GramTargets = Mapping[str, torch.Tensor]  # layer -> (C, C) target Gram matrix


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C): F F^T / (H W)."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (h * w)


def content_loss(layer: str, target: torch.Tensor) -> Objective:
    """Mean squared difference between ``layer``'s features and ``target``."""

    def fn(features, _image):
        return (features[layer] - target).pow(2).mean()

    return Objective(fn, {layer}, f"content({layer})")


def relative_feature_loss(layer: str, target: torch.Tensor) -> Objective:
    """Squared feature error at ``layer`` relative to the target's squared norm."""
    norm = target.pow(2).sum().clamp_min(1e-12)

    def fn(features, _image):
        return (features[layer] - target).pow(2).sum() / norm

    return Objective(fn, {layer}, f"feature({layer})")


def style_loss(layer_weights: Mapping[str, float], targets: Sequence[GramTargets], weights: Sequence[float] | None = None) -> Objective:
    """sum_k w_k sum_l a_l mean((G_l(x) - A_l^k)^2) over style targets k and layers l."""
    weights = list(weights) if weights is not None else [1.0] * len(targets)
    if len(weights) != len(targets):
        raise ValueError("one weight per style target")
    layers = dict(layer_weights)

    def fn(features, _image):
        grams = {layer: gram_matrix(features[layer])[0] for layer in layers}
        total = 0.0
        for target, weight in zip(targets, weights):
            for layer, layer_weight in layers.items():
                total = total + weight * layer_weight * (grams[layer] - target[layer]).pow(2).mean()
        return total

    return Objective(fn, set(layers), "style")


def tv_norm(images: torch.Tensor, beta: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """Mean over pixels (and images) of (dx^2 + dy^2)^(beta/2): the one total-variation formula."""
    dx = images[..., :-1, 1:] - images[..., :-1, :-1]
    dy = images[..., 1:, :-1] - images[..., :-1, :-1]
    squared = dx.pow(2) + dy.pow(2)
    if beta == 2.0:
        return squared.mean()
    return (squared + eps).pow(beta / 2).mean()


def total_variation(beta: float = 2.0, eps: float = 1e-8) -> Objective:
    """:func:`tv_norm` of the image the network sees, as an objective."""
    return Objective(lambda _features, image: tv_norm(image, beta, eps), (), f"tv(beta={beta:g})")
