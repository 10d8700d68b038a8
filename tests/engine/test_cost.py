"""Cost estimates agree with what the methods then do (pictures drawn, windows run, arrays returned)."""

import numpy as np
import pytest

from engine.models import find_spec
from engine.models.profile import model_profile
from engine.registry import get_method, parse_params
from engine.run import run_method


def _cost(name, model, params, images=1):
    method = get_method(name)
    return method.estimate(model_profile(find_spec(model)), parse_params(method, params), images)


@pytest.mark.parametrize("params", [{}, {"layer": "block3_conv2", "max_filters": 5, "max_input_channels": 7, "tile_size": 12}])
def test_filters_pixels_are_those_of_the_grid_drawn(params):
    result = run_method("filters", "vgg19", {}, params, device="cpu")
    width, height = result.images["filters"].size
    assert _cost("filters", "vgg19", params).pixels == pytest.approx(width * height, rel=0.05)


def test_activations_bytes_cover_the_array_returned_and_pixels_the_grid(chelsea):
    params = {"layer": "block2_conv1", "size": 96}
    result = run_method("activations", "vgg19", {"image": chelsea}, params, device="cpu")
    cost = _cost("activations", "vgg19", params)
    grid = result.images["activations"]
    assert cost.pixels == pytest.approx(grid.width * grid.height + 3 * 96 * 96, rel=0.05)
    assert cost.bytes >= np.asarray(result.arrays["activations"]).nbytes


def test_occlusion_passes_are_its_windows_plus_the_clean_pass(chelsea):
    params = {"window": 64, "stride": 40}
    result = run_method("occlusion", "efficientnet_lite0", {"image": chelsea}, params, device="cpu")
    assert _cost("occlusion", "efficientnet_lite0", params).passes == result.data["windows"] + 1


def test_gradient_methods_pay_a_forward_and_a_backward_pass_per_sample_or_step():
    assert _cost("saliency", "efficientnet_lite0", {}).passes == 2
    assert _cost("smoothgrad", "efficientnet_lite0", {"samples": 10}).passes == 21
    assert _cost("integrated_gradients", "efficientnet_lite0", {"steps": 16}).passes == 35
    # a batch keeps its activations for the backward pass: memory grows with the batch
    assert _cost("smoothgrad", "efficientnet_lite0", {"samples": 10, "batch_size": 10}).bytes > 5 * _cost("smoothgrad", "efficientnet_lite0", {"samples": 10, "batch_size": 1}).bytes
