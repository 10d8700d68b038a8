"""Style losses: exact values on hand-made tensors, and each loss falls over 5 Adam steps on VGG19."""

import pytest
import torch

from engine.imaging import to_tensor
from engine.optim.loop import ImageParam, features_of, render
from engine.optim.style_losses import content_loss, gram_matrix, relative_feature_loss, style_loss, total_variation
from engine.synthesis.feature_targets import features, gram_targets, resize_longest


def test_gram_matrix_matches_hand_computation():
    # two channels over four positions: F = [[1, 2, 3, 4], [0, 1, 0, 1]]
    feats = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]]).reshape(1, 2, 2, 2)
    expected = torch.tensor([[1 + 4 + 9 + 16, 0 + 2 + 0 + 4], [6, 0 + 1 + 0 + 1]]) / 4.0
    assert torch.allclose(gram_matrix(feats)[0], expected)


def test_total_variation_matches_hand_computation():
    image = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0], [0.0, 0.0, 5.0]]).reshape(1, 1, 3, 3)
    # at the four top-left pixels: (dx, dy) = (1, 2), (2, 1), (0, -2), (0, -2)
    squared = [1 + 4, 4 + 1, 0 + 4, 0 + 4]
    assert total_variation(2.0)({}, image).item() == pytest.approx(sum(squared) / 4)
    assert total_variation(1.0)({}, image).item() == pytest.approx(sum(s**0.5 for s in squared) / 4, rel=1e-5)


def test_feature_losses_by_hand():
    target = torch.tensor([[1.0, -2.0], [2.0, 0.0]]).reshape(1, 1, 2, 2)
    assert content_loss("l", target)({"l": torch.zeros_like(target)}, None).item() == pytest.approx(9 / 4)
    assert relative_feature_loss("l", target)({"l": torch.zeros_like(target)}, None).item() == pytest.approx(1.0)
    assert relative_feature_loss("l", target)({"l": target.clone()}, None).item() == 0.0


def test_style_loss_sums_weighted_targets():
    feats = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 0.0, 1.0]]).reshape(1, 2, 2, 2)
    gram = gram_matrix(feats)[0]
    loss = style_loss({"l": 2.0}, [{"l": gram}, {"l": gram + 1.0}], [0.25, 0.75])
    assert loss({"l": feats}, None).item() == pytest.approx(2.0 * 0.75 * 1.0)
    with pytest.raises(ValueError):
        style_loss({"l": 1.0}, [{"l": gram}], [0.5, 0.5])


@pytest.fixture(scope="module")
def photos(chelsea, coffee):
    return to_tensor(resize_longest(chelsea, 48)), to_tensor(resize_longest(coffee, 48))


@pytest.mark.parametrize("kind", ["content", "relative", "style", "tv2", "tv1"])
def test_each_loss_falls_over_five_adam_steps(vgg19, photos, kind):
    content, style = photos
    objective = {
        "content": lambda: content_loss("block2_relu1", features(vgg19, content, ["block2_relu1"])["block2_relu1"]),
        "relative": lambda: relative_feature_loss("block1_relu2", features(vgg19, content, ["block1_relu2"])["block1_relu2"]),
        "style": lambda: style_loss({"block1_relu1": 1.0, "block2_relu1": 1.0}, [gram_targets(vgg19, style, ["block1_relu1", "block2_relu1"])]),
        "tv2": lambda: total_variation(2.0),
        "tv1": lambda: total_variation(1.0),
    }[kind]()
    start = torch.rand(content.shape, generator=torch.Generator().manual_seed(0))
    pixels = start.clone().requires_grad_(True)
    render(vgg19, ImageParam([pixels], lambda: pixels), objective, 5, optimizer="adam", lr=0.02)

    def value(image):
        with torch.no_grad():
            return objective(features_of(vgg19, objective, image), image).item()

    assert value(pixels.detach()) < 0.9 * value(start)
