"""fast_style_transfer: the transformer's training loss falls and stylised images keep their size."""

import json

import numpy as np
import pytest
import torch

from engine.errors import UnknownLayer
from engine.hooks import hook_count
from engine.run import run_method
from engine.synthesis.fast_style import Transformer


def test_transformer_keeps_any_size_and_stays_in_pixel_range():
    torch.manual_seed(0)
    out = Transformer(width=4, blocks=1)(torch.rand(2, 3, 37, 50))
    assert out.shape == (2, 3, 37, 50) and 0 <= out.min() and out.max() <= 1


def test_training_loss_falls_and_outputs_keep_their_input_size(vgg19, chelsea, coffee, sample_images):
    contents = [chelsea.resize((61, 41)), coffee.resize((48, 56))]
    style = sample_images[1].resize((64, 48))  # the flower
    weights = [p.clone() for p in vgg19.parameters()]
    seen = []
    params = {"steps": 16, "batch_size": 1, "size": 32, "width": 8, "residual_blocks": 1, "lr": 0.01, "preview_every": 8}
    result = run_method(
        "fast_style_transfer", "vgg19", {"content": contents, "style": style}, params,
        progress=lambda step, total, preview=None, **info: seen.append((step, total, preview, info["loss"])), device="cpu",
    )  # fmt: skip
    losses = result.data["losses"]
    assert len(losses) == 16 and np.mean(losses[-4:]) < 0.85 * losses[0], losses
    assert result.data["loss_parts"]["style"][-1] < result.data["loss_parts"]["style"][0]
    assert [s[0] for s in seen] == list(range(1, 17)) and [s[3] for s in seen] == losses
    assert [s[0] for s in seen if s[2] is not None] == [8, 16] and seen[7][2].size == (32, 32)
    assert result.images["stylised_0"].size == (61, 41) and result.images["stylised_1"].size == (48, 56)
    assert not np.array_equal(np.asarray(result.images["stylised_0"]), np.asarray(contents[0]))
    assert result.arrays["losses"].shape == (16,) and "loss_curve" in result.images
    json.dumps(result.data)
    assert hook_count(vgg19) == 0
    assert all(torch.equal(a, b) for a, b in zip(weights, vgg19.parameters()))


def test_loss_layers_must_exist_in_the_loss_network(efficientnet, chelsea):
    with pytest.raises(UnknownLayer, match="block4_relu2"):
        run_method("fast_style_transfer", "efficientnet_lite0", {"content": [chelsea], "style": chelsea}, {"steps": 1, "size": 32}, device="cpu")
    assert hook_count(efficientnet) == 0
