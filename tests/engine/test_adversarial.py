"""Adversarial images on real photos, judged the way a client would: after the
PNG is encoded, sent and decoded again."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import InvalidParams, UnknownClass, UnsupportedModel
from engine.hooks import hook_count
from engine.imaging import fit_image, to_tensor
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
    result = run_method("fooling_image", "efficientnet_lite0", {"image": picture}, {"target": "ostrich", "eps": 4}, device="cpu")
    original = fit_image(picture, efficientnet.input_size)
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
    original = fit_image(picture, efficientnet.input_size)
    adversarial = png_round_trip(result.images["adversarial"])
    before, after = classify(efficientnet, original).argmax(), classify(efficientnet, adversarial).argmax()
    assert after != before
    assert linf_255(adversarial, original) <= 4
    assert result.data["success"] is True and result.data["original"]["index"] == int(before)
    assert [c[0] for c in calls] == list(range(1, result.data["steps"] + 1))


def test_fgsm_is_one_full_size_step(efficientnet, coffee):
    result = run_method("adversarial_untargeted", "efficientnet_lite0", {"image": coffee}, {"attack": "fgsm", "eps": 3}, device="cpu")
    original = np.asarray(fit_image(coffee, efficientnet.input_size), dtype=int)
    change = np.asarray(result.images["adversarial"], dtype=int) - original
    inside = (original >= 3) & (original <= 252)  # where clipping to 0..255 cannot shorten the step
    assert result.data["steps"] == 1
    assert set(np.unique(np.abs(change[inside]))) <= {0, 3}
    assert (np.abs(change[inside]) == 3).mean() > 0.9
    adversarial = png_round_trip(result.images["adversarial"])
    assert result.data["success"] == (int(classify(efficientnet, adversarial).argmax()) != result.data["original"]["index"])


def test_universal_perturbation_fools_most_of_a_collection(efficientnet, chelsea, coffee, astronaut, sample_images):
    pictures = [chelsea, coffee, astronaut, *sample_images]
    result = run_method("universal_perturbation", "efficientnet_lite0", {"images": pictures}, {"eps": 8, "steps": 20}, device="cpu")
    perturbation = result.arrays["perturbation"]
    assert np.abs(perturbation).max() <= 8 / 255 + 1e-6
    assert np.allclose(perturbation * 255, np.round(perturbation * 255), atol=1e-3)
    fooled = 0
    for picture in pictures:
        original = to_tensor(fit_image(picture, efficientnet.input_size))
        attacked = ((original + torch.from_numpy(perturbation)).clamp(0, 1) * 255).round() / 255
        with torch.inference_mode():
            fooled += int(efficientnet(attacked).argmax() != efficientnet(original).argmax())
    assert fooled / len(pictures) == pytest.approx(result.data["fooling_rate"])
    assert result.data["fooling_rate"] >= 0.8
    assert [entry["fooled"] for entry in result.data["images"]].count(True) == fooled
    assert result.images["perturbation"].size == (224, 224)
    assert hook_count(efficientnet) == 0


@pytest.mark.parametrize(
    ("method", "model", "params", "error"),
    [
        ("fooling_image", "efficientnet_lite0", {"target": "not a class"}, UnknownClass),
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
    with pytest.raises(InvalidParams):
        run_method("universal_perturbation", "efficientnet_lite0", {"images": [chelsea]}, {}, device="cpu")
