"""engine.run validates params and inputs before any model work."""

import pytest

from engine.errors import InvalidParams, UnknownMethod, UnsupportedModel
from engine.registry import get_method
from engine.run import check_inputs, parse_params, run_method


def test_unknown_param_names_are_refused_with_the_known_ones():
    with pytest.raises(InvalidParams, match=r"unknown params for classify: topk \(known: top_k, fit\)"):
        parse_params(get_method("classify"), {"topk": 3})


def test_out_of_range_and_non_object_params_are_invalid():
    with pytest.raises(InvalidParams, match="top_k"):
        parse_params(get_method("classify"), {"top_k": 0})
    with pytest.raises(InvalidParams, match="must be an object"):
        parse_params(get_method("classify"), [1, 2])


def test_inputs_are_checked_by_slot(chelsea):
    method = get_method("classify")
    with pytest.raises(InvalidParams, match="needs input 'image'"):
        check_inputs(method, {})
    with pytest.raises(InvalidParams, match="takes one image"):
        check_inputs(method, {"image": [chelsea, chelsea]})
    with pytest.raises(InvalidParams, match="no input named extra"):
        check_inputs(method, {"image": chelsea, "extra": chelsea})


def test_methods_needing_a_classifier_refuse_headless_models(chelsea):
    with pytest.raises(UnsupportedModel, match="vgg19"):
        run_method("classify", "vgg19", {"image": chelsea})
    with pytest.raises(UnknownMethod):
        run_method("nope", "vgg19", {"image": chelsea})


def test_run_method_names_what_ran_even_if_the_method_uses_the_same_keys(sample_images, chelsea):
    result = run_method("embedding", "efficientnet_lite0", {"images": [*sample_images, chelsea]}, {"method": "pca", "size": 64})
    assert result.data["method"] == "embedding"
    assert result.data["model"] == "efficientnet_lite0"
    assert result.data["projection"] == "pca"
