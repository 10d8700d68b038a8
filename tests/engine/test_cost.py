"""Cost estimates agree with what the methods then do (pictures drawn, windows run, arrays returned)."""

import numpy as np
import pytest
import torch

from engine.models import find_spec
from engine.models.profile import model_profile
from engine.registry import all_methods, get_method, parse_params
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
    assert cost.bytes >= np.asarray(result.arrays["maps"]).nbytes


@pytest.mark.parametrize("strategy, computed", [("auto", "windows"), ("approximate", "windows_computed")])
def test_occlusion_passes_are_its_windows_plus_the_clean_pass(chelsea, strategy, computed):
    params = {"window": 64, "stride": 40, "strategy": strategy}
    result = run_method("occlusion", "efficientnet_lite0", {"image": chelsea}, params, device="cpu")
    assert _cost("occlusion", "efficientnet_lite0", params).passes == result.data[computed] + 1
    assert result.data["strategy"] == ("receptive_field" if strategy == "auto" else "approximate")


def test_gradient_methods_pay_a_forward_and_a_backward_pass_per_sample_or_step():
    assert _cost("saliency", "efficientnet_lite0", {}).passes == 2
    assert _cost("smoothgrad", "efficientnet_lite0", {"samples": 10}).passes == 21
    assert _cost("integrated_gradients", "efficientnet_lite0", {"steps": 16}).passes == 35
    # a batch keeps its activations for the backward pass: memory grows with the batch
    assert _cost("smoothgrad", "efficientnet_lite0", {"samples": 10, "batch_size": 10}).bytes > 5 * _cost("smoothgrad", "efficientnet_lite0", {"samples": 10, "batch_size": 1}).bytes


# -- passes estimated against passes counted ------------------------------------------------------

TOLERANCE = (0.8, 1.25)  # counted / estimated: an estimate may be a fifth too high or a quarter too low
LITE, VGG = "efficientnet_lite0", "vgg19"
CHEAP = {  # method -> (model, params, pictures per input): the cheapest call that still runs each built-in method
    "classify": (LITE, {}, {"image": 1}),
    "activations": (LITE, {"size": 64}, {"image": 1}),
    "filters": (VGG, {}, {}),
    "embed_collection": (LITE, {"size": 64, "batch_size": 2}, {"images": 3}),
    "embedding": (LITE, {"size": 64, "projection": "pca"}, {"images": 3}),
    "nearest_neighbors": (LITE, {"size": 64, "top_k": 1}, {"images": 2, "query": 1}),
    "max_activating_patches": (VGG, {"size": 64, "layer": "block2_conv1", "top_k": 2}, {"images": 2}),
    "channel_overview": (VGG, {"size": 64, "layer": "block2_conv1", "top_k": 2}, {"images": 2}),
    "saliency": (LITE, {}, {"image": 1}),
    "gradcam": (LITE, {}, {"image": 1}),
    "guided_backprop": (LITE, {}, {"image": 1}),
    "deconvnet": (LITE, {}, {"image": 1}),
    "segmentation": (LITE, {"steps": 1}, {"image": 1}),
    "smoothgrad": (LITE, {"samples": 3, "batch_size": 2}, {"image": 1}),
    "integrated_gradients": (LITE, {"steps": 4, "batch_size": 3}, {"image": 1}),
    # brute force: every window a whole pass, the most the estimate allows for (the receptive-field plan runs less)
    "occlusion": (LITE, {"window": 112, "stride": 56, "strategy": "brute_force"}, {"image": 1}),
    "evaluate_attribution": (LITE, {"methods": ["saliency"], "size": 64, "deletion_steps": 2}, {"images": 1}),
    "fooling_image": (LITE, {"target_class": "ostrich", "steps": 3, "confidence": 0.999}, {"image": 1}),
    "adversarial_untargeted": (LITE, {"steps": 3, "eps": 1, "step_size": 0.1}, {"image": 1}),
    "universal_perturbation": (LITE, {"steps": 2, "stop_at_rate": None, "holdout": 0.5}, {"images": 4}),
    "class_visualization": (LITE, {"steps": 3, "size": 64, "facets": 2}, {}),
    "deepdream": (VGG, {"steps": 2, "octaves": 2, "max_side": 96}, {"image": 1}),
    "feature_inversion": (VGG, {"steps": 3, "max_side": 64, "layer": "block2_relu1"}, {"image": 1}),
    "texture_synthesis": (VGG, {"steps": 3, "height": 48, "width": 48, "max_side": 48}, {"image": 1}),
    "style_transfer": (VGG, {"steps": 3, "coarse_steps": 2, "scales": 2, "max_side": 64}, {"content": 1, "style": 1}),
    "train_style_model": (VGG, {"steps": 2, "batch_size": 2, "size": 32, "base_channels": 4, "residual_blocks": 1}, {"content": 2, "style": 1}),
}


def inputs_for(name: str, counts: dict[str, int], photos: list) -> dict:
    many = {slot.name for slot in get_method(name).inputs if slot.many}
    found, left = {}, iter(photos)
    for slot, count in counts.items():
        pictures = [next(left) for _ in range(count)]
        found[slot] = pictures if slot in many else pictures[0]
    return found


def counted_passes(first_conv_shape, run) -> int:
    """Pictures through the network's first convolution (any copy of it: folded, traced, rule copies; the judge's, of
    the same shape), forward, and backward where a gradient flowed back through it."""
    counted = [0]

    def forward(module, _inputs, output):
        if isinstance(module, torch.nn.Conv2d) and tuple(module.weight.shape) == first_conv_shape:
            counted[0] += output.shape[0]
            if output.requires_grad:
                output.register_hook(lambda grad: counted.__setitem__(0, counted[0] + grad.shape[0]))

    handle = torch.nn.modules.module.register_module_forward_hook(forward)
    try:
        run()
    finally:
        handle.remove()
    return counted[0]


@pytest.mark.parametrize("name", sorted(CHEAP))
def test_estimated_passes_are_those_a_run_makes(name, chelsea, coffee, astronaut, sample_images):
    """Every method: the passes its cost states against the passes counted while it runs (TOLERANCE)."""
    model, params, counts = CHEAP[name]
    inputs = inputs_for(name, counts, [chelsea, coffee, astronaut, *sample_images])
    estimated = _cost(name, model, params, sum(counts.values())).passes
    first = model_profile(find_spec(model)).layer_info(find_spec(model).first_conv).weight
    run_method(name, model, inputs, params, device="cpu")  # a warm service: copies built, layer shapes at this size known
    counted = counted_passes(first, lambda: run_method(name, model, inputs, params, device="cpu"))
    if estimated == 0:
        assert counted == 0
        return
    low, high = TOLERANCE
    assert low <= counted / estimated <= high, f"{name}: {counted} passes counted, {estimated} estimated"


def test_every_built_in_method_is_counted():
    assert {m.name for m in all_methods() if m.run.__module__.startswith("engine.")} == set(CHEAP)
