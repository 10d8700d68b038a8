"""DeepDream on real photos and real pretrained networks."""

import numpy as np
import pytest

from engine.errors import InvalidParams, UnknownLayer
from engine.hooks import capture, hook_count, run_until
from engine.imaging import to_tensor
from engine.optim.loop import render
from engine.run import run_method


def activation_norm(model, layer, picture) -> float:
    with capture({layer: model.layer(layer)}, stop_early=True, detach=True) as feats:
        run_until(model, to_tensor(picture))
    return float(feats[layer].norm())


def test_amplifies_the_default_vgg19_layer_more_than_twofold(vgg19, chelsea):
    calls = []
    result = run_method(
        "deepdream", "vgg19", {"image": chelsea},
        {"max_side": 96, "octaves": 2, "steps": 6, "preview_every": 3},
        progress=lambda step, total, preview=None, **info: calls.append((step, total, preview, info)),
        device="cpu",
    )
    dreamt, original = result.images["image"], result.images["input"]
    assert result.data["layer"] == "block4_conv2"
    assert dreamt.size == original.size == (96, 64)  # chelsea is 451 x 300: the aspect is kept
    gain = activation_norm(vgg19, "block4_conv2", dreamt) / activation_norm(vgg19, "block4_conv2", original)
    assert gain > 2
    assert result.data["activation_gain"] == pytest.approx(gain, rel=0.05)
    pixels = np.asarray(dreamt)
    assert np.abs(pixels.astype(int) - np.asarray(original).astype(int)).mean() > 2  # it really changed
    # progress counts every step of every octave, previews at octave ends and every 3 steps
    assert [c[0] for c in calls] == list(range(1, 13)) and {c[1] for c in calls} == {12}
    assert [c[3]["octave"] for c in calls] == [1] * 6 + [2] * 6
    assert [c[0] for c in calls if c[2] is not None] == [3, 6, 9, 12]
    assert result.data["octave_sizes"] == [[46, 69], [64, 96]]
    assert len(result.data["losses"]) == 12
    assert hook_count(vgg19) == 0


def test_runs_on_efficientnet_with_its_default_layer_and_stays_in_range(efficientnet, coffee):
    result = run_method(
        "deepdream", "efficientnet_lite0", {"image": coffee}, {"max_side": 96, "octaves": 2, "steps": 4}, device="cpu"
    )
    assert result.data["layer"] == "blocks.4"
    assert result.data["activation_gain"] > 1
    dreamt = to_tensor(result.images["image"])
    assert 0 <= float(dreamt.min()) and float(dreamt.max()) <= 1
    assert hook_count(efficientnet) == 0


def test_pixels_stay_in_range_before_8_bit_rounding(vgg19, chelsea, monkeypatch):
    import engine.synthesis.deepdream as module

    floats = []

    def recording_render(*args, **kwargs):
        rendered = render(*args, **kwargs)
        floats.append(rendered.image)
        return rendered

    monkeypatch.setattr(module, "render", recording_render)
    run_method("deepdream", "vgg19", {"image": chelsea}, {"max_side": 64, "octaves": 1, "steps": 3, "step_size": 51}, device="cpu")  # 0.2 of the range
    (image,) = floats
    assert float(image.min()) == 0 and float(image.max()) == 1  # big steps reach both ends and stop there


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"layer": "block9_conv1"}, UnknownLayer),
        ({"max_side": 64, "octaves": 4}, InvalidParams),
        ({"octave_scale": 3}, InvalidParams),
        ({"steps": 0}, InvalidParams),
    ],
)
def test_bad_params_raise_clear_errors(params, error, vgg19, chelsea):
    with pytest.raises(error):
        run_method("deepdream", "vgg19", {"image": chelsea}, params, device="cpu")
    assert hook_count(vgg19) == 0
