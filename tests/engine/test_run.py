"""engine.run validates params and inputs before any model work."""

import pytest

from engine.errors import InputProblem, InvalidParams, UnknownMethod, UnsupportedModel
from engine.registry import get_method, parse_params
from engine.run import check_counts, run_method


def test_unknown_param_names_are_refused_with_the_known_ones():
    with pytest.raises(InvalidParams, match=r"unknown params for classify: topk \(known: fit, top_k\)"):
        parse_params(get_method("classify"), {"topk": 3})


def test_out_of_range_and_non_object_params_are_invalid():
    with pytest.raises(InvalidParams, match="top_k"):
        parse_params(get_method("classify"), {"top_k": 0})
    with pytest.raises(InvalidParams, match="must be an object"):
        parse_params(get_method("classify"), [1, 2])


def test_inputs_are_checked_by_slot():
    method = get_method("classify")
    for counts, code, match in [
        ({}, "missing_input", "needs input 'image'"),
        ({"image": 2}, "wrong_image_count", "takes one image"),
        ({"image": 1, "extra": 1}, "unknown_input", "takes no input 'extra'"),
    ]:
        with pytest.raises(InputProblem, match=match) as refused:
            check_counts(method, counts)
        assert refused.value.code == code


def test_methods_needing_a_classifier_refuse_headless_models(chelsea):
    with pytest.raises(UnsupportedModel, match="vgg19"):
        run_method("classify", "vgg19", {"image": chelsea})
    with pytest.raises(UnknownMethod):
        run_method("nope", "vgg19", {"image": chelsea})


def test_run_method_names_what_ran_even_if_the_method_uses_the_same_keys(sample_images, chelsea):
    result = run_method("embedding", "efficientnet_lite0", {"images": [*sample_images, chelsea]}, {"projection": "pca", "size": 64})
    assert result.data["method"] == "embedding"
    assert result.data["model"] == "efficientnet_lite0"
    assert result.data["projection"] == "pca"
