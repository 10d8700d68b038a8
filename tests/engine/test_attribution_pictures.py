"""Map pictures people can read, on chelsea with default params; the raw maps stay as they are."""

import numpy as np
import pytest

from engine.attribution.params import AttributionParams
from engine.attribution.render import display_map
from engine.imaging import DIVERGING_CENTRE, colorize
from engine.run import run_method


@pytest.fixture(scope="module")
def pictures(chelsea):
    return {
        name: run_method(name, "efficientnet_lite0", {"image": chelsea}, params)
        for name, params in {"saliency": {}, "guided_backprop": {}, "deconvnet": {}, "integrated_gradients": {"steps": 8}}.items()
    }


def grey(picture) -> np.ndarray:
    return np.asarray(picture.convert("L"), dtype=np.float64)


def test_guided_backprop_and_deconvnet_gradients_are_drawn_with_contrast(pictures):
    for name in ("guided_backprop", "deconvnet"):
        result = pictures[name]
        assert result.main == "gradient"
        assert grey(result.images["gradient"]).std() >= 25 if name == "guided_backprop" else grey(result.images["gradient"]).std() >= 15
        # mid-grey is a zero gradient: the picture's median pixel is close to it
        assert abs(np.median(grey(result.images["gradient"])) - 128) < 20


def test_saliency_heatmap_uses_its_whole_colour_scale(pictures):
    result = pictures["saliency"]
    assert result.main == "heatmap"
    values = result.arrays["map"]
    heat = np.asarray(result.images["heatmap"]).reshape(-1, 3)
    top = np.asarray(colorize(np.ones((1, 1)), "jet")).reshape(3)
    at_top = (heat == top).all(1)
    order = np.argsort(values.ravel())
    p99 = order[int(0.99 * values.size)]
    assert at_top[p99], "the 99th-percentile pixel is drawn in the colour scale's top colour"
    assert at_top.mean() <= 0.03, f"{at_top.mean():.1%} of the pixels clipped"
    assert np.median(grey(result.images["heatmap"])) > 40  # no longer a dark picture with specks


def test_signed_maps_put_zero_at_the_centre_colour(pictures):
    result = pictures["integrated_gradients"]
    values = result.arrays["map"]
    assert result.data["colormap"] == "coolwarm" and values.min() < 0 < values.max()
    low, high = result.data["display_range"]
    assert low == -high
    heat = np.asarray(result.images["heatmap"])
    near_zero = np.abs(values) < high / 1024  # within a quarter of one 8-bit step of 0.5 on the scale
    assert near_zero.sum() > 100
    assert (heat[near_zero & (values >= 0)] == DIVERGING_CENTRE).all()
    assert np.abs(heat[near_zero].astype(int) - DIVERGING_CENTRE).max() <= 2  # at most one colour step off (8-bit rounding)
    # positive attribution is drawn red-side, negative blue-side
    strong = np.abs(values) >= high
    assert (heat[strong & (values > 0)][:, 0] > heat[strong & (values > 0)][:, 2]).all()
    assert (heat[strong & (values < 0)][:, 2] > heat[strong & (values < 0)][:, 0]).all()
    # an exact zero, through the display scaling alone
    scaled, *_ = display_map(np.array([[-3.0, 0.0, 1.0, 2.0]], np.float32), AttributionParams(), signed=True)
    assert tuple(np.asarray(colorize(scaled, "coolwarm"))[0, 1]) == DIVERGING_CENTRE


def test_raw_maps_are_the_unscaled_gradients(pictures):
    result = pictures["guided_backprop"]
    np.testing.assert_array_equal(result.arrays["map"], np.abs(result.arrays["input_gradient"]).max(0))
    assert result.data["map_range"] == [float(result.arrays["map"].min()), float(result.arrays["map"].max())]
