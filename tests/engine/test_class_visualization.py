"""Class visualisation on real pretrained networks."""

import pytest
import torch

from engine.errors import InvalidParams, UnknownChannel, UnknownClass, UnknownLayer, UnsupportedModel
from engine.hooks import capture, hook_count, run_until
from engine.imaging import to_tensor
from engine.run import run_method

# Simonyan et al.'s plain recipe (score minus L2, no transforms or blur), small and short.
PLAIN = {"parameterization": "pixels", "size": 96, "steps": 60, "l2": 0.5, "jitter": 0, "pad": 0, "scale": 0, "rotate": 0, "blur_every": 0, "preview_every": 20}


def test_raises_the_target_probability_above_0_9_from_a_zero_image(efficientnet):
    calls = []
    result = run_method(
        "class_visualization", "efficientnet_lite0", {},
        {**PLAIN, "init": "zeros", "objectives": [{"kind": "class", "class": "flamingo"}]},
        progress=lambda step, total, preview=None, **info: calls.append((step, total, preview, info)),
        device="cpu",
    )
    picture = result.images["image"]
    with torch.inference_mode():
        probability = efficientnet(to_tensor(picture)).softmax(-1)[0, 130]
    assert probability > 0.9
    assert result.data["target_probabilities"]["flamingo"] == pytest.approx(float(probability), abs=0.02)
    assert picture.size == (96, 96)
    # progress: every step with its loss, a preview every 20 steps; the loss curve comes back
    assert [c[0] for c in calls] == list(range(1, 61)) and {c[1] for c in calls} == {60}
    assert [c[0] for c in calls if c[2] is not None] == [20, 40, 60]
    assert result.data["losses"] == [c[3]["loss"] for c in calls]
    assert result.data["losses"][-1] < result.data["losses"][0]
    assert result.images["loss_curve"].size[0] > 0 and result.arrays["losses"].shape == (60,)
    assert result.data["params"]["objectives"][0]["class"] == "flamingo"
    assert hook_count(efficientnet) == 0


def test_weighted_layer_objectives_work_on_vgg19_with_every_regulariser(vgg19):
    params = {
        "parameterization": "pixels", "size": 64, "steps": 6, "lr": 0.05, "init": "noise", "preview_every": 0,
        "objectives": [{"kind": "channel", "layer": "block3_conv1", "channel": 5, "weight": 1.0},
                       {"kind": "neuron", "layer": "block3_conv1", "channel": 9, "y": 3, "x": 4, "weight": 0.5}],
        "jitter": 2, "pad": 4, "scale": 0.1, "rotate": 5, "blur_every": 2,
        "clip_norm_percentile": 10, "clip_contribution_percentile": 10,
    }
    result = run_method("class_visualization", "vgg19", {}, params, device="cpu")
    start = run_method("class_visualization", "vgg19", {}, {**params, "steps": 1, "lr": 1e-6}, device="cpu")

    def channel_mean(picture):
        with capture({"c": vgg19.layer("block3_conv1")}, stop_early=True, detach=True) as feats:
            run_until(vgg19, to_tensor(picture))
        return float(feats["c"][0, 5].mean())

    assert channel_mean(result.images["image"]) > channel_mean(start.images["image"])
    assert "channel(block3_conv1:5)" in result.data["objective"] and "neuron(block3_conv1:9)" in result.data["objective"]
    assert "top" not in result.data  # no classifier, no class report
    assert hook_count(vgg19) == 0


@pytest.mark.parametrize(
    ("model", "objective", "error"),
    [
        ("efficientnet_lite0", {"kind": "class", "class": "not a class"}, UnknownClass),
        ("efficientnet_lite0", {"kind": "class", "class": 1000}, UnknownClass),
        ("vgg19", {"kind": "class", "class": 3}, UnsupportedModel),
        ("vgg19", {"kind": "channel", "layer": "block9_conv1", "channel": 0}, UnknownLayer),
        ("vgg19", {"kind": "channel", "layer": "block1_conv1", "channel": 64}, UnknownChannel),
        ("vgg19", {"kind": "neuron", "layer": "block1_conv1", "channel": 0, "y": 64}, InvalidParams),
        ("efficientnet_lite0", {"kind": "neuron", "layer": "classifier", "channel": 0}, InvalidParams),
        ("vgg19", {"kind": "channel", "layer": "block1_conv1"}, InvalidParams),
        ("vgg19", {"kind": "layer"}, InvalidParams),
        ("vgg19", {"kind": "painting", "layer": "block1_conv1"}, InvalidParams),
    ],
)
def test_bad_objectives_raise_clear_errors(model, objective, error, efficientnet, vgg19):
    with pytest.raises(error):
        run_method("class_visualization", model, {}, {"size": 64, "steps": 1, "objectives": [objective]}, device="cpu")
    assert hook_count(efficientnet) == 0 and hook_count(vgg19) == 0


@pytest.mark.parametrize("params", [{"size": 8}, {"steps": 0}, {"lr": 0}, {"objectives": []}, {"clip_norm_percentile": 101}])
def test_out_of_range_params_are_invalid(params):
    with pytest.raises(InvalidParams):
        run_method("class_visualization", "efficientnet_lite0", {}, params, device="cpu")
