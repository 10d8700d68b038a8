"""Adversarial images on real photos, judged the way a client would: after the
PNG is encoded, sent and decoded again."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InputProblem, InvalidParams, UnknownClass, UnsupportedModel
from engine.hooks import hook_count
from engine.imaging import to_tensor
from engine.run import run_method


def png_round_trip(picture: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def classify(model, picture: Image.Image) -> torch.Tensor:
    with torch.inference_mode():
        return model(to_tensor(picture)).softmax(-1)[0]


def linf_255(a: Image.Image, b: Image.Image) -> int:
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
def test_targeted_fooling_survives_png_at_4_over_255(photo, efficientnet, request):
    picture = request.getfixturevalue(photo)
    result = run_method("fooling_image", "efficientnet_lite0", {"image": picture}, {"target_class": "ostrich", "eps": 4}, device="cpu")
    original = efficientnet.fit_input(picture)
    adversarial = png_round_trip(result.images["adversarial"])
    probs = classify(efficientnet, adversarial)
    assert efficientnet.labels[int(probs.argmax())] == "ostrich"
    assert linf_255(adversarial, original) <= 4
    assert efficientnet.labels[int(classify(efficientnet, original).argmax())] != "ostrich"
    data = result.data
    assert data["success"] is True and data["target"]["label"] == "ostrich"
    assert data["adversarial"]["probability"] == pytest.approx(float(probs.max()), abs=1e-4)
    assert data["original"]["label"] == efficientnet.labels[int(classify(efficientnet, original).argmax())]
    assert data["perturbation"]["linf_255"] == linf_255(adversarial, original)
    assert data["perturbation"]["linf"] == pytest.approx(data["perturbation"]["linf_255"] / 255)
    assert 1 <= data["steps"] < 200 and len(data["losses"]) == data["steps"]
    assert set(result.images) >= {"adversarial", "perturbation", "original", "loss_curve"}
    assert hook_count(efficientnet) == 0


@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
def test_untargeted_pgd_flips_the_label_at_4_over_255(photo, efficientnet, request):
    picture = request.getfixturevalue(photo)
    calls = []
    result = run_method(
        "adversarial_untargeted", "efficientnet_lite0", {"image": picture}, {"attack": "pgd", "eps": 4},
        progress=lambda step, total, preview=None, **info: calls.append((step, total, info["loss"])), device="cpu",
    )
    original = efficientnet.fit_input(picture)
    adversarial = png_round_trip(result.images["adversarial"])
    before, after = classify(efficientnet, original).argmax(), classify(efficientnet, adversarial).argmax()
    assert after != before
    assert linf_255(adversarial, original) <= 4
    assert result.data["success"] is True and result.data["original"]["index"] == int(before)
    assert [c[0] for c in calls] == list(range(1, result.data["steps"] + 1))


def test_fgsm_is_one_full_size_step(efficientnet, coffee):
    result = run_method("adversarial_untargeted", "efficientnet_lite0", {"image": coffee}, {"attack": "fgsm", "eps": 3}, device="cpu")
    original = np.asarray(efficientnet.fit_input(coffee), dtype=int)
    change = np.asarray(result.images["adversarial"], dtype=int) - original
    inside = (original >= 3) & (original <= 252)  # where clipping to 0..255 cannot shorten the step
    assert result.data["steps"] == 1
    assert set(np.unique(np.abs(change[inside]))) <= {0, 3}
    assert (np.abs(change[inside]) == 3).mean() > 0.9
    adversarial = png_round_trip(result.images["adversarial"])
    assert result.data["success"] == (int(classify(efficientnet, adversarial).argmax()) != result.data["original"]["index"])


@pytest.fixture(scope="module")
def sample_photos():
    from worker.samples import sample_files

    return [Image.open(path).convert("RGB") for path in sample_files()]


def fooled_by(model, pictures, perturbation) -> list[bool]:
    """Recomputed here: does the 8-bit perturbed picture get another label than the original?"""
    out = []
    for picture in pictures:
        original = to_tensor(model.fit_input(picture))
        attacked = ((original + torch.from_numpy(perturbation)).clamp(0, 1) * 255).round() / 255
        with torch.inference_mode():
            out.append(bool(model(attacked).argmax() != model(original).argmax()))
    return out


@pytest.mark.slow
def test_universal_perturbation_fools_held_out_pictures_more_than_noise(efficientnet, sample_photos):
    params = {"eps": 8, "steps": 8, "step_size": 2, "holdout": 0.5, "stop_at_rate": None, "preview_every": 0}
    result = run_method("universal_perturbation", "efficientnet_lite0", {"images": sample_photos}, params, device="cpu")
    data, perturbation = result.data, result.arrays["delta"]
    assert np.abs(perturbation).max() <= 8 / 255 + 1e-6
    assert np.allclose(perturbation * 255, np.round(perturbation * 255), atol=1e-3)
    held = data["held_out_images"]
    assert len(held) == 8 and not set(held) & set(data["fit_images"]) and sorted(held + data["fit_images"]) == list(range(16))
    fooled = fooled_by(efficientnet, [sample_photos[i] for i in held], perturbation)
    assert data["held_out_fooling_rate"] == pytest.approx(np.mean(fooled))
    assert data["noise"]["linf_255"] == data["perturbation"]["linf_255"] == 8.0
    assert data["held_out_fooling_rate"] > data["held_out_noise_fooling_rate"], data
    assert [entry["held_out"] for entry in data["images"]].count(True) == 8
    assert hook_count(efficientnet) == 0


@pytest.mark.slow
def test_deepfool_construction_stays_in_budget_and_fools_what_it_fitted(efficientnet, sample_photos):
    params = {"algorithm": "deepfool", "eps": 12, "steps": 1, "candidates": 3, "holdout": 0.5, "seed": 1}
    result = run_method("universal_perturbation", "efficientnet_lite0", {"images": sample_photos[:4]}, params, device="cpu")
    data, perturbation = result.data, result.arrays["delta"]
    assert np.abs(perturbation).max() <= 12 / 255 + 1e-6
    fit = [sample_photos[i] for i in data["fit_images"]]
    assert data["fit_fooling_rate"] == pytest.approx(np.mean(fooled_by(efficientnet, fit, perturbation)))
    assert data["fit_fooling_rate"] > 0 and data["held_out_noise_fooling_rate"] is not None
    assert hook_count(efficientnet) == 0


@pytest.mark.parametrize(
    ("method", "model", "params", "error"),
    [
        ("fooling_image", "efficientnet_lite0", {"target_class": "not a class"}, UnknownClass),
        ("fooling_image", "vgg19", {}, UnsupportedModel),
        ("fooling_image", "efficientnet_lite0", {"eps": 0}, InvalidParams),
        ("adversarial_untargeted", "efficientnet_lite0", {"attack": "deepfool"}, InvalidParams),
        ("adversarial_untargeted", "efficientnet_lite0", {"eps": 65}, InvalidParams),
    ],
)
def test_bad_requests_raise_clear_errors(method, model, params, error, chelsea):
    with pytest.raises(error):
        run_method(method, model, {"image": chelsea}, params, device="cpu")


def test_universal_needs_a_collection(chelsea):
    with pytest.raises(InputProblem, match="takes 2..256 images, got 1"):
        run_method("universal_perturbation", "efficientnet_lite0", {"images": [chelsea]}, {}, device="cpu")
    with pytest.raises(InvalidParams, match="no picture to fit"):
        run_method("universal_perturbation", "efficientnet_lite0", {"images": [chelsea, chelsea]}, {"holdout": 0.9}, device="cpu")
