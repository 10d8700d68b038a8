"""One way to name a class in every answer: classify's top list, an attribution's target,
an attack's original and adversarial classes and class visualisation's report."""

import torch

from engine.imaging import fit_image, to_tensor
from engine.run import run_method

KEYS = {"index", "label", "probability"}


def test_classify_top_and_an_attribution_target_name_the_class_alike(efficientnet, chelsea):
    with torch.inference_mode():
        probabilities = efficientnet(to_tensor(fit_image(chelsea, (224, 224)), "cpu")).softmax(-1)[0]
    expected = probabilities.topk(3)

    top = run_method("classify", "efficientnet_lite0", {"image": chelsea}, {"top_k": 3, "fit": "stretch"}, device="cpu").data["top"]
    assert [entry["index"] for entry in top] == expected.indices.tolist()
    assert [entry["probability"] for entry in top] == torch.tensor(expected.values.tolist()).tolist()
    assert all(set(entry) == KEYS and entry["label"] == efficientnet.labels[entry["index"]] for entry in top)

    target = run_method("saliency", "efficientnet_lite0", {"image": chelsea}, {"fit": "stretch"}, device="cpu").data["target"]
    assert set(target) == KEYS | {"score"}
    assert target["index"] == top[0]["index"] and abs(target["probability"] - top[0]["probability"]) < 1e-5


def test_an_attack_names_its_classes_like_classify(efficientnet, chelsea):
    params = {"attack": "fgsm", "eps": 2, "preview_every": 0}
    data = run_method("adversarial_untargeted", "efficientnet_lite0", {"image": chelsea}, params, device="cpu").data
    assert set(data["original"]) == set(data["adversarial"]) == KEYS
