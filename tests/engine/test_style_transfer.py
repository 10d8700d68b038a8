"""Style transfer on real VGG19 / EfficientNet weights and real photos."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from engine.errors import InputProblem, InvalidParams, UnknownLayer
from engine.hooks import hook_count
from engine.run import run_method
from engine.synthesis import color
from engine.synthesis.style_transfer import StyleTransferParams

SMALL = {"max_side": 64, "steps": 15, "scales": 1, "preview_every": 5}


def test_total_loss_falls_and_the_content_aspect_is_kept(vgg19, chelsea, coffee):
    previews = []
    progress = lambda step, total, preview=None, **info: previews.append(preview) if preview else None  # noqa: E731
    result = run_method("style_transfer", "vgg19", {"content": chelsea, "style": [coffee]}, SMALL, progress)

    losses = result.data["losses"]
    assert losses[-1] < 0.2 * losses[0]
    assert result.images["image"].size == (64, 43)  # chelsea is 451 x 300
    assert len(previews) == 3 and all(p.size == (64, 43) for p in previews)
    assert result.data["params"]["content_layer"] is None  # the paper's default, block4_relu2
    assert hook_count(vgg19) == 0


def test_bfloat16_forward_reaches_nearly_the_float32_loss(vgg19, chelsea, coffee):
    inputs = {"content": chelsea, "style": [coffee]}
    small = {**SMALL, "max_side": 40}  # bfloat16 runs 8x slower on a CPU without bf16 units: a small picture
    full = run_method("style_transfer", "vgg19", inputs, small).data["losses"]
    half = run_method("style_transfer", "vgg19", inputs, {**small, "precision": "bfloat16"}).data["losses"]
    assert half[0] == pytest.approx(full[0], rel=0.05)  # same start, losses computed in float32
    assert half[-1] < 0.2 * half[0]
    assert half[-1] < 1.5 * full[-1]
    assert hook_count(vgg19) == 0


def test_coarse_to_fine_ends_at_the_output_size(vgg19, chelsea, astronaut, coffee):
    params = {**SMALL, "scales": 2, "coarse_steps": 5, "steps": 5, "style_weights": [3, 1]}
    steps = []
    progress = lambda step, total, preview=None, **info: steps.append((step, total, info["height"]))  # noqa: E731
    result = run_method("style_transfer", "vgg19", {"content": chelsea, "style": [coffee, astronaut]}, params, progress)

    assert result.images["image"].size == (64, 43)
    assert [s[0] for s in steps] == list(range(1, 11)) and {s[1] for s in steps} == {10}
    assert [s[2] for s in steps] == [22] * 5 + [43] * 5
    assert len(result.data["losses"]) == 10


# As many steps as the earlier fixed weights needed to lose the cat at 192 and 256 px (it was still there after 30
# and 20); at 512 px (where they kept it) fewer, most of them on the 256 px level.
FEW_STEPS = {192: {"steps": 60}, 256: {"steps": 40}, 512: {"coarse_steps": 10, "steps": 6}}


@pytest.mark.slow
@pytest.mark.parametrize("side", sorted(FEW_STEPS))
def test_the_photo_stays_recognisable_at_every_size(vgg19, efficientnet, chelsea, side):
    """EfficientNet-Lite0, a classifier the optimisation never sees, still names one of the photo's top 3 classes
    among its top 5 for the stylised picture, at every size; and the style did come: the loss fell by half.

    A stylised picture that kept nothing of the photo is named otherwise: with the earlier fixed weights (and 100
    steps at half size first) knot, shower cap, ibex, three-toed sloth, swab at 192 px; bighorn, ram, ibex... at 256 px."""
    style = Image.fromarray(data.immunohistochemistry())  # a textured real picture, far from any cat
    result = run_method("style_transfer", "vgg19", {"content": chelsea, "style": [style]}, {"max_side": side, **FEW_STEPS[side]})
    photo = run_method("classify", "efficientnet_lite0", {"image": chelsea}, {"top_k": 3}).data["top"]
    seen = run_method("classify", "efficientnet_lite0", {"image": result.images["image"]}, {"top_k": 5}).data["top"]

    assert max(result.images["image"].size) == side
    assert {c["label"] for c in photo} & {c["label"] for c in seen}, [c["label"] for c in seen]
    assert result.data["losses"][-1] < 0.5 * result.data["losses"][0]


def test_what_is_left_out_is_chosen_for_the_device_and_reported(chelsea, coffee):
    result = run_method("style_transfer", "vgg19", {"content": chelsea, "style": [coffee]}, {"steps": 1})
    assert result.data["size"] == [170, 256]  # the CPU's default max_side, chelsea's aspect
    assert result.data["scales"] == [{"height": 170, "width": 256, "steps": 1}]
    assert result.data["precision"] == "float32"
    params = StyleTransferParams()
    assert params.for_device("gpu").max_side == 512 and params.for_device("gpu").scales == 2
    assert params.for_device("cpu").steps == 30 and params.for_device("cpu").scales == 1


def test_runs_on_efficientnet_with_its_own_default_layers(efficientnet, chelsea, coffee):
    result = run_method("style_transfer", "efficientnet_lite0", {"content": chelsea, "style": [coffee]}, {**SMALL, "steps": 8})
    losses = result.data["losses"]
    assert losses[-1] < 0.5 * losses[0]
    assert hook_count(efficientnet) == 0


def test_luminance_transfer_keeps_the_photo_colours(vgg19, chelsea, coffee):
    params = {**SMALL, "steps": 10, "preserve_color": "luminance"}
    result = run_method("style_transfer", "vgg19", {"content": chelsea, "style": [coffee]}, params)
    photo = chelsea.resize(result.images["image"].size)
    yiq = color._YIQ.double().numpy()
    ours = (np.asarray(result.images["image"], dtype=np.float64).reshape(-1, 3) / 255) @ yiq.T
    theirs = (np.asarray(photo, dtype=np.float64).reshape(-1, 3) / 255) @ yiq.T
    assert np.abs(ours[:, 1:] - theirs[:, 1:]).mean() < 0.01  # chroma (I, Q) kept
    assert np.abs(ours[:, 0] - theirs[:, 0]).mean() > 0.01  # luminance changed


def test_color_match_gives_the_style_the_photo_colour_statistics(chelsea, coffee):
    matched = color.match_colors(coffee, chelsea)
    ours = np.asarray(matched, dtype=np.float64).reshape(-1, 3) / 255
    target = np.asarray(chelsea, dtype=np.float64).reshape(-1, 3) / 255
    assert np.allclose(ours.mean(0), target.mean(0), atol=0.01)
    assert np.allclose(np.cov(ours, rowvar=False), np.cov(target, rowvar=False), atol=0.003)


@pytest.mark.parametrize(
    "params, error",
    [
        ({"style_weights": [1, 1]}, InvalidParams),
        ({"style_weights": [0]}, InvalidParams),
        ({"style_layers": ["block1_relu1"], "style_layer_weights": [1, 1]}, InvalidParams),
        ({"content_layer": "block4_conv9"}, UnknownLayer),
        ({"content_weight": -1}, InvalidParams),
        ({"max_side": 4096}, InvalidParams),
    ],
)
def test_bad_params_give_clear_errors(vgg19, chelsea, coffee, params, error):
    with pytest.raises(error):
        run_method("style_transfer", "vgg19", {"content": chelsea, "style": [coffee]}, {**SMALL, "steps": 1, **params})
    assert hook_count(vgg19) == 0


def test_style_image_count_is_checked(chelsea, coffee):
    with pytest.raises(InputProblem, match="1..4"):
        run_method("style_transfer", "vgg19", {"content": chelsea, "style": [coffee] * 5}, {"steps": 1})
