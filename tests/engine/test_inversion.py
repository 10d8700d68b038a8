"""Feature inversion on real VGG19 weights and a real photo."""

import pytest

from engine.errors import InvalidParams, UnknownLayer
from engine.hooks import hook_count
from engine.run import run_method


def test_reconstruction_matches_the_layer_features(vgg19, chelsea):
    calls = []

    def progress(step, total, preview=None, **info):
        calls.append((step, total, preview is not None, info["loss"]))

    params = {"layer": "block2_relu1", "max_side": 64, "steps": 25, "preview_every": 10}
    result = run_method("feature_inversion", "vgg19", {"image": chelsea}, params, progress)

    assert result.data["relative_feature_error"] < 0.1
    assert result.images["image"].size == (64, 43)  # chelsea is 451 x 300: aspect kept
    assert result.data["losses"][-1] < 0.01 * result.data["losses"][0]
    assert [c[0] for c in calls] == list(range(1, 26)) and {c[1] for c in calls} == {25}
    assert [c[0] for c in calls if c[2]] == [10, 20, 25]
    assert calls[-1][3] == pytest.approx(result.data["losses"][-1])
    assert {"loss_curve", "image"} <= set(result.images)
    assert hook_count(vgg19) == 0


def test_unknown_layers_are_refused(vgg19, chelsea):
    with pytest.raises(UnknownLayer):
        run_method("feature_inversion", "vgg19", {"image": chelsea}, {"layer": "block9_relu1", "steps": 1})
    assert hook_count(vgg19) == 0


@pytest.mark.parametrize("params", [{"tv_weight": -1}, {"steps": 0}, {"optimizer": "sgd"}, {"max_side": 5000}])
def test_bad_params_are_invalid(chelsea, params):
    with pytest.raises(InvalidParams):
        run_method("feature_inversion", "vgg19", {"image": chelsea}, params)


@pytest.mark.parametrize("side", [(4, 200), (200, 4)], ids=["tall", "wide"])
def test_a_photo_too_elongated_for_the_network_is_refused(vgg19, chelsea, side):
    with pytest.raises(InvalidParams, match="under 16 px a side; send a less elongated"):
        run_method("feature_inversion", "vgg19", {"image": chelsea.resize(side)}, {"max_side": 64, "steps": 1})
