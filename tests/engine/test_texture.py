"""Texture synthesis on real VGG19 weights and a real photo."""

import pytest

from engine.errors import InvalidParams, UnknownLayer
from engine.hooks import hook_count
from engine.run import run_method


def test_gram_loss_falls_by_ninety_percent_at_a_new_size(vgg19, coffee):
    params = {"max_side": 64, "height": 40, "width": 72, "steps": 40, "preview_every": 0}
    result = run_method("texture_synthesis", "vgg19", {"image": coffee}, params)

    losses = result.data["losses"]
    assert losses[-1] < 0.1 * losses[0]
    assert result.images["image"].size == (72, 40)
    assert result.data["layers"] == ["block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1", "block5_relu1"]
    assert hook_count(vgg19) == 0


def test_layer_and_weight_errors(efficientnet, coffee):
    with pytest.raises(InvalidParams, match="params.layers: .*vector"):
        run_method("texture_synthesis", "efficientnet_lite0", {"image": coffee}, {"layers": ["classifier"], "steps": 1})
    with pytest.raises(UnknownLayer):
        run_method("texture_synthesis", "vgg19", {"image": coffee}, {"layers": ["block1_relu1", "nope"], "steps": 1})
    with pytest.raises(InvalidParams, match="layer_weights takes one weight per layer"):
        run_method("texture_synthesis", "vgg19", {"image": coffee}, {"layers": ["block1_relu1"], "layer_weights": [1, 2], "steps": 1})
    with pytest.raises(InvalidParams, match="layer_weights.0: Input should be greater than or equal to 0"):
        run_method("texture_synthesis", "vgg19", {"image": coffee}, {"layers": ["block1_relu1"], "layer_weights": [-1], "steps": 1})
    with pytest.raises(InvalidParams):
        run_method("texture_synthesis", "vgg19", {"image": coffee}, {"height": 2})


@pytest.mark.parametrize("side", [(4, 200), (200, 4)], ids=["tall", "wide"])
def test_a_photo_too_elongated_for_the_network_is_refused(vgg19, coffee, side):
    photo = coffee.resize(side)  # at max_side 64: 1 px across, gone before the deepest layers
    with pytest.raises(InvalidParams, match="under 16 px a side; send a less elongated"):
        run_method("texture_synthesis", "vgg19", {"image": photo}, {"max_side": 64, "height": 32, "width": 32, "steps": 1})
