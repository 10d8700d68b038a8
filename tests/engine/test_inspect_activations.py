"""activations: one layer's feature maps as a grid, equal to a direct forward-hook capture."""

import json

import numpy as np
import pytest
import torch

from engine.errors import InvalidParams, UnknownChannel
from engine.hooks import hook_count
from engine.imaging import fit_image, to_tensor
from engine.run import run_method


def hooked(model, layer: str, image, size: int) -> np.ndarray:
    """The layer's output for ``image``, captured with a plain forward hook."""
    seen = []
    handle = model.layer(layer).register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            model(to_tensor(fit_image(image, (size, size))))
    finally:
        handle.remove()
    return seen[0][0].numpy()


@pytest.mark.parametrize(
    "model_name, layer, size",
    [("vgg19", "block1_conv1", 64), ("vgg19", "block3_relu2", 64), ("efficientnet_lite0", "blocks.2", 96), ("efficientnet_lite0", "bn1", 96)],
)
def test_grid_has_one_tile_per_channel_and_raw_values_match_a_hook(request, chelsea, model_name, layer, size):
    model = request.getfixturevalue("vgg19" if model_name == "vgg19" else "efficientnet")
    result = run_method("activations", model_name, {"image": chelsea}, {"layer": layer, "size": size, "fit": "stretch"}, device="cpu")
    expected = hooked(model, layer, chelsea, size)  # stretched
    channels, height, width = expected.shape
    np.testing.assert_array_equal(result.arrays["maps"], expected)
    assert result.data["channels"] == list(range(channels))
    tile = height * result.data["zoom"]
    columns = int(np.ceil(np.sqrt(channels)))
    rows = -(-channels // columns)
    assert result.images["activations"].size == (columns * (tile + 1) + 1, rows * (tile + 1) + 1)
    stats = result.data["stats"]
    np.testing.assert_allclose(stats["mean"], expected.mean((1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["max"], expected.max((1, 2)), rtol=1e-6)
    np.testing.assert_allclose(stats["zero_fraction"], (expected == 0).mean((1, 2)), atol=1e-7)
    json.dumps(result.data)
    assert hook_count(model) == 0


def test_relu_outputs_have_dead_units_and_top_k_picks_the_most_active(vgg19, coffee):
    result = run_method("activations", "vgg19", {"image": coffee}, {"layer": "block2_relu1", "size": 64, "top_k": 5}, device="cpu")
    means = result.arrays["maps"].mean((1, 2))
    assert result.data["channels"] == np.argsort(-means, kind="stable")[:5].tolist()
    assert np.mean(result.data["stats"]["zero_fraction"]) > 0.2  # a ReLU zeroes much of its input
    assert result.images["activations"].size == (3 * 33 + 1, 2 * 33 + 1)


def test_channel_subset_and_global_normalisation(efficientnet, chelsea):
    params = {"layer": "conv_stem", "size": 64, "channels": [3, 0], "normalization": "global"}
    result = run_method("activations", "efficientnet_lite0", {"image": chelsea}, params, device="cpu")
    assert result.data["channels"] == [3, 0]
    grid = np.asarray(result.images["activations"])
    maps = result.arrays["maps"][[3, 0]]
    scaled = np.round((maps - maps.min()) / (maps.max() - maps.min()) * 255).astype(np.uint8)
    np.testing.assert_array_equal(grid[1:33, 1:33], scaled[0])
    np.testing.assert_array_equal(grid[1:33, 34:66], scaled[1])


def test_bad_requests_raise_engine_errors(efficientnet, chelsea):
    with pytest.raises(InvalidParams, match="vector"):
        run_method("activations", "efficientnet_lite0", {"image": chelsea}, {"layer": "classifier", "size": 64}, device="cpu")
    with pytest.raises(UnknownChannel):
        run_method("activations", "efficientnet_lite0", {"image": chelsea}, {"layer": "conv_stem", "size": 64, "channels": [32]}, device="cpu")
    assert hook_count(efficientnet) == 0


def test_efficientnet_default_layer_is_the_rectified_head(efficientnet, chelsea):
    """Grad-CAM and activations default to conv_head after its batch norm and ReLU6, as the papers use."""
    assert efficientnet.spec.default_layer == "bn2"
    result = run_method("activations", "efficientnet_lite0", {"image": chelsea}, {"size": 96}, device="cpu")
    maps = result.arrays["maps"]
    assert result.data["layer"] == "bn2" and maps.shape == (1280, 3, 3)
    assert maps.min() >= 0 and maps.max() <= 6 and (maps == 0).mean() > 0.1  # ReLU6: rectified, many exact zeros
    cam = run_method("gradcam", "efficientnet_lite0", {"image": chelsea}, {})
    assert cam.data["layer"] == "bn2" and cam.arrays["cam"].shape == (7, 7)
