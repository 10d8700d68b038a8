"""The model zoo loads real ImageNet weights and describes its layers."""

import pytest
import torch

from engine.errors import UnknownClass, UnknownLayer, UnknownModel
from engine.imaging import fit_image, to_tensor
from engine.models import builtin_specs, find_spec

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def top_labels(model, image, k):
    with torch.inference_mode():
        probs = model(to_tensor(fit_image(image, model.input_size))).softmax(-1)[0]
    return [model.labels[i] for i in probs.topk(k).indices.tolist()], probs


def test_efficientnet_sees_a_cat_in_chelsea(efficientnet, chelsea):
    labels, _ = top_labels(efficientnet, chelsea, 3)
    assert CAT_CLASSES & set(labels), labels


def test_efficientnet_sees_espresso_in_coffee(efficientnet, coffee):
    labels, probs = top_labels(efficientnet, coffee, 1)
    assert labels == ["espresso"]
    assert probs.max() > 0.5


def test_vgg19_catalogue_lists_all_16_convs_with_their_shapes(vgg19):
    convs = [info for info in vgg19.catalogue((224, 224)) if info.type == "Conv2d"]
    expected = [(64, 224)] * 2 + [(128, 112)] * 2 + [(256, 56)] * 4 + [(512, 28)] * 4 + [(512, 14)] * 4
    assert [(c.shape[0], c.shape[1]) for c in convs] == expected
    assert all(c.shape[1] == c.shape[2] for c in convs)
    assert convs[0].name == "block1_conv1" and convs[-1].name == "block5_conv4"


def test_vgg19_features_respond_to_content(vgg19, chelsea, coffee):
    a = vgg19(to_tensor(fit_image(chelsea, (64, 64))))
    b = vgg19(to_tensor(fit_image(coffee, (64, 64))))
    assert a.shape == (1, 512, 2, 2)
    assert not torch.allclose(a, b)


def test_catalogue_follows_input_size(efficientnet):
    small = {i.name: i.shape for i in efficientnet.catalogue((96, 96))}
    assert small["conv_stem"] == (32, 48, 48)
    assert small["conv_head"] == (1280, 3, 3)
    assert small["classifier"] == (1000,)


def test_unknown_names_raise_clear_errors(efficientnet, vgg19):
    with pytest.raises(UnknownModel, match="resnet"):
        find_spec("resnet")
    with pytest.raises(UnknownLayer, match="nope"):
        efficientnet.layer("nope")
    with pytest.raises(UnknownClass):
        efficientnet.class_index(1000)
    with pytest.raises(UnknownClass):
        efficientnet.class_index("not a class")
    with pytest.raises(UnknownClass, match="no classifier"):
        vgg19.class_index(3)
    assert efficientnet.class_index("Espresso") == 967


def test_zoo_lists_both_models_and_does_not_require_grad(efficientnet):
    assert {s.name for s in builtin_specs()} >= {"efficientnet_lite0", "vgg19"}
    assert not any(p.requires_grad for p in efficientnet.parameters())


def test_layers_are_indexed_once_not_walked_per_lookup(efficientnet, monkeypatch):
    walks = []
    real = type(efficientnet.net).named_modules
    monkeypatch.setattr(efficientnet.net, "named_modules", lambda *a, **k: walks.append(1) or real(efficientnet.net, *a, **k))
    expected = {name: module for name, module in real(efficientnet.net) if name}
    assert dict(efficientnet.layers) == expected
    assert efficientnet.layer("conv_head") is expected["conv_head"]
    efficientnet.check_channel("conv_head", 3)
    with pytest.raises(UnknownLayer):
        efficientnet.layer("")
    assert walks == []


def test_classify_and_attributions_default_to_the_models_evaluation_resize(chelsea):
    """efficientnet_lite0 declares a centre crop (its ImageNet evaluation); an explicit fit still wins."""
    from engine.run import run_method

    assert find_spec("efficientnet_lite0").eval_fit == "crop" and find_spec("vgg19").eval_fit == "stretch"
    wide = chelsea.resize((400, 200))
    for method in ("classify", "saliency"):
        default = run_method(method, "efficientnet_lite0", {"image": wide}, {}, device="cpu").images["input"]
        cropped = run_method(method, "efficientnet_lite0", {"image": wide}, {"fit": "crop"}, device="cpu").images["input"]
        stretched = run_method(method, "efficientnet_lite0", {"image": wide}, {"fit": "stretch"}, device="cpu").images["input"]
        assert default.tobytes() == cropped.tobytes() != stretched.tobytes()
        assert default.tobytes() == fit_image(wide, (224, 224), "crop").tobytes()
