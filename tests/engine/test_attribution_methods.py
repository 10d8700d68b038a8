"""Every attribution method on real EfficientNet-Lite0 weights and real photos: shapes, sense, errors."""

import json

import numpy as np
import pytest

from engine.errors import InvalidParams, UnknownChannel, UnknownClass, UnknownLayer, UnsupportedModel
from engine.registry import all_methods
from engine.run import run_method

ATTRIBUTIONS = {
    "saliency": {},
    "guided_backprop": {},
    "deconvnet": {},
    "gradcam": {},
    "smoothgrad": {"samples": 6},
    "integrated_gradients": {"steps": 12},
    "occlusion": {"window": 48, "stride": 32},
    "segmentation": {},
}
CENTRE = (slice(56, 168), slice(56, 168))


def centre_to_frame(values: np.ndarray, frame: int = 24) -> float:
    """Mean positive value in the central box over the mean in the outer frame (about 1 for a random map)."""
    values = np.clip(values, 0, None)
    inner = np.ones(values.shape, bool)
    inner[frame:-frame, frame:-frame] = False
    return float(values[CENTRE].mean() / (values[inner].mean() + 1e-12))


@pytest.fixture(scope="module")
def results(chelsea):
    return {name: run_method(name, "efficientnet_lite0", {"image": chelsea}, params) for name, params in ATTRIBUTIONS.items()}


def test_every_attribution_is_registered_inline():
    found = {m.name: m for m in all_methods() if m.category == "attribute"}
    assert set(ATTRIBUTIONS) <= set(found)
    assert all(found[name].inline for name in ATTRIBUTIONS)
    assert "classifier" not in found["guided_backprop"].requires and "classifier" in found["occlusion"].requires


@pytest.mark.parametrize("name", sorted(ATTRIBUTIONS))
def test_one_result_schema(results, name):
    result = results[name]
    assert result.arrays["map"].shape == (224, 224) and result.arrays["map"].dtype == np.float32
    assert result.images["heatmap"].size == result.images["overlay"].size == (224, 224)
    main = {"segmentation": "masked", "gradcam": "overlay", "occlusion": "overlay", "guided_backprop": "gradient", "deconvnet": "gradient"}
    assert result.main == main.get(name, "heatmap")
    data = json.loads(json.dumps(result.data))
    assert data["model"] == "efficientnet_lite0" and data["method"] == name
    assert data["target"]["label"] == "Egyptian cat" and 0 < data["target"]["probability"] < 1
    assert {"sign", "normalization", "colormap", "timings"} <= set(data)


@pytest.mark.parametrize("name", ["saliency", "guided_backprop", "deconvnet", "gradcam", "smoothgrad", "integrated_gradients"])
def test_maps_concentrate_on_the_cat(results, name):
    assert centre_to_frame(results[name].arrays["map"]) > 1.3
    assert 0.9 < centre_to_frame(np.random.default_rng(0).random((224, 224))) < 1.1


def test_segmentation_mask_covers_the_cat_not_the_frame(results):
    mask = results["segmentation"].arrays["foreground"].astype(float)
    assert centre_to_frame(mask) > 2 and 0.1 < mask.mean() < 0.8
    masked = np.asarray(results["segmentation"].images["masked"])
    assert (masked[mask == 0] == 0).all()


def test_integrated_gradients_reports_convergence(results):
    data = results["integrated_gradients"].data
    total = float(results["integrated_gradients"].arrays["map"].sum())
    assert abs(data["convergence_delta"]) < 0.5 * abs(total)


def test_occlusion_finds_the_espresso_cup(coffee):
    """On chelsea occluding the face moves probability between cat breeds; coffee has one clear object."""
    result = run_method("occlusion", "efficientnet_lite0", {"image": coffee}, {"window": 32, "stride": 16})
    drop = result.arrays["map"]
    assert result.data["target"]["label"] == "espresso" and result.data["strategy"] == "receptive_field"
    y, x = np.unravel_index(drop.argmax(), drop.shape)
    assert 16 <= y <= 150 and 40 <= x <= 200  # the cup, seen from above
    assert drop.max() > 0.1
    assert result.arrays["logit_drop"].shape == (224, 224)


@pytest.mark.parametrize(
    "name, model, params, error",
    [
        ("saliency", "efficientnet_lite0", {"target_class": "not a class"}, UnknownClass),
        ("saliency", "efficientnet_lite0", {"target_class": 1000}, UnknownClass),
        ("saliency", "efficientnet_lite0", {"colour": "red"}, InvalidParams),
        ("saliency", "vgg19", {}, UnsupportedModel),
        ("guided_backprop", "vgg19", {}, UnknownClass),
        ("guided_backprop", "vgg19", {"target_class": 3}, UnknownClass),
        ("guided_backprop", "efficientnet_lite0", {"layer": "nope", "channel": 0}, UnknownLayer),
        ("guided_backprop", "efficientnet_lite0", {"layer": "conv_stem", "channel": 32}, UnknownChannel),
        ("guided_backprop", "efficientnet_lite0", {"layer": "conv_stem", "channel": 1, "neuron": [200, 0]}, InvalidParams),
        ("guided_backprop", "efficientnet_lite0", {"layer": "conv_stem"}, InvalidParams),
        ("deconvnet", "efficientnet_lite0", {"layer": "conv_stem", "channel": 1, "target_class": 3}, InvalidParams),
        ("deconvnet", "efficientnet_lite0", {"channel": 1}, InvalidParams),
        ("gradcam", "efficientnet_lite0", {"layer": "classifier"}, InvalidParams),
        ("gradcam", "efficientnet_lite0", {"layer": "blocks.99"}, UnknownLayer),
        ("occlusion", "efficientnet_lite0", {"window": 300}, InvalidParams),
        ("occlusion", "efficientnet_lite0", {"fill": [0, 0, 256]}, InvalidParams),
        ("occlusion", "efficientnet_lite0", {"batch_size": 0}, InvalidParams),
        ("smoothgrad", "efficientnet_lite0", {"noise_level": 2}, InvalidParams),
        ("integrated_gradients", "efficientnet_lite0", {"steps": 1}, InvalidParams),
        ("integrated_gradients", "efficientnet_lite0", {"baseline": "white"}, InvalidParams),
        ("segmentation", "efficientnet_lite0", {"foreground_percentile": 20, "background_percentile": 40}, InvalidParams),
    ],
)
def test_bad_requests_raise_the_right_error(chelsea, name, model, params, error):
    small = chelsea.resize((64, 48))
    with pytest.raises(error):
        run_method(name, model, {"image": small}, params)


def test_guided_backprop_on_vgg19_layer_target(chelsea):
    result = run_method(
        "guided_backprop", "vgg19", {"image": chelsea.resize((96, 64))}, {"layer": "block5_conv1", "channel": 10}
    )
    assert result.data["target"] == {**result.data["target"], "layer": "block5_conv1", "channel": 10, "reduce": "mean"}
    assert result.arrays["input_gradient"].shape == (3, 224, 224) and result.data["layer"] == "block5_conv1"
