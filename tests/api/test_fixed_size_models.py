"""A model that runs at its native size only (adaptive pooling exported as a fixed AveragePool, as torchvision's
vgg11_bn exports by default): registered as fixed, and every method then works at that size or answers 422
saying so; describing it at another size is a 422, never a 500. Random weights (format test)."""

import pytest

from engine.errors import UnsupportedModel
from engine.run import prepare
from tests import hostile_files as hostile
from tests.model_files import metadata, register, registry_client  # noqa: F401
from tests.pictures import encode

SIZE = (64, 64)
LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def fixed(registry_client):
    answer = register(registry_client, "fixed-net", hostile.fixed_size_onnx(), metadata("fixed-net", SIZE, LABELS))
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_it_is_described_as_fixed_and_refuses_other_sizes(registry_client, fixed):
    assert fixed["sizes"] == {"native": [64, 64], "min": [64, 64], "max": [64, 64], "fixed": True}
    other = registry_client.get("/v1/models/fixed-net?height=128&width=128")
    assert other.status_code == 422 and other.json()["code"] == "unsupported_model"
    assert "only at its native size 64x64" in other.json()["detail"]
    assert registry_client.get("/v1/models/fixed-net?height=64&width=64").status_code == 200


def test_methods_that_change_the_size_are_listed_unsupported_with_the_reason(fixed):
    support = {entry["method"]: entry for entry in fixed["supported_methods"]}
    for name in ("class_visualization", "deepdream", "style_transfer", "texture_synthesis", "train_style_model"):
        assert not support[name]["supported"] and "runs at its native size 64x64 only" in support[name]["reason"], support[name]
    for name in ("classify", "saliency", "occlusion", "gradcam", "integrated_gradients"):
        assert support[name]["supported"], support[name]


def test_a_call_at_another_size_is_a_422_naming_the_size_and_one_at_its_size_runs(registry_client, fixed, small_chelsea):
    models = registry_client.app.state.model_store().spec_for  # the worker's path, as open access's tenant
    with pytest.raises(UnsupportedModel, match="runs only at its native size 64x64; this call would run it at 128x128"):
        prepare("evaluate_attribution", "fixed-net", {"methods": ["saliency"]}, {"images": 2}, "public", models=models)  # 128 px
    prepare("evaluate_attribution", "fixed-net", {"methods": ["saliency"], "size": 64}, {"images": 2}, "public", models=models)
    picture = {"image": ("p.png", encode(small_chelsea, "PNG"))}
    assert registry_client.post("/v1/saliency", files=picture, data={"model": "fixed-net"}).status_code == 200
    resized = registry_client.post("/v1/activations", files=picture, data={"model": "fixed-net", "params": '{"size": 96}'})
    assert resized.status_code == 422 and "96x96" in resized.json()["detail"], resized.text
