"""TorchScript models: the methods that need only pixels -> logits run (and agree with the ONNX copy of the
same network); the others refuse with a 422 that says why, and the catalogue says so beforehand."""

import base64
import io
import json

import numpy as np
import pytest

from engine.models.support import TORCHSCRIPT_METHODS
from engine.registry import all_methods
from engine.run import run_method
from tests.model_files import metadata, onnx_bytes, register, registry_client, tiny_net, torchscript_bytes  # noqa: F401
from tests.pictures import encode

SIZE = (64, 64)
LABELS = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module")
def scripted(registry_client):
    response = register(registry_client, "tiny-script", torchscript_bytes(tiny_net()), metadata("tiny-script", SIZE, LABELS))
    assert response.status_code == 201, response.text
    twin = register(registry_client, "tiny-onnx", onnx_bytes(tiny_net(), SIZE), metadata("tiny-onnx", SIZE, LABELS))
    assert twin.status_code == 201, twin.text
    return response.json()


def post(client, method, model, picture, params=None):
    files = {"image": ("p.png", encode(picture, "PNG"), "image/png")}
    return client.post(f"/v1/{method}?embed=all", files=files, data={"model": model, "params": json.dumps(params or {})})


def array(answer, name="map") -> np.ndarray:
    found = next(a for a in answer.json()["artifacts"] if a["name"] == name)
    return np.load(io.BytesIO(base64.b64decode(found["data_base64"])), allow_pickle=False)


def test_catalogue_says_which_methods_run_and_why_not(scripted):
    assert scripted["format"] == "torchscript" and scripted["layers"] == [] and "TorchScript" in scripted["layers_note"]
    support = {entry["method"]: entry for entry in scripted["supported_methods"]}
    assert set(support) == {method.name for method in all_methods()}
    for name, entry in support.items():
        assert entry["supported"] == (name in TORCHSCRIPT_METHODS), entry
        if not entry["supported"]:
            assert "TorchScript" in entry["reason"]
    assert not support["guided_backprop"]["supported"] and not support["gradcam"]["supported"]


@pytest.mark.parametrize("method", ["saliency", "occlusion"])
def test_supported_methods_agree_with_the_onnx_copy(registry_client, scripted, small_chelsea, method):
    params = {"window": 16, "stride": 16} if method == "occlusion" else {}
    ours = post(registry_client, method, "tiny-script", small_chelsea, params)
    theirs = post(registry_client, method, "tiny-onnx", small_chelsea, params)
    assert ours.status_code == 200 and theirs.status_code == 200, ours.text + theirs.text
    if method == "occlusion":
        assert ours.json()["data"]["strategy"] == "brute_force"  # no fx graph, so no receptive-field plan
        assert theirs.json()["data"]["strategy"] == "receptive_field"
    expected = array(theirs)
    np.testing.assert_allclose(array(ours), expected, rtol=1e-3, atol=1e-5 * float(np.abs(expected).max()))


@pytest.mark.parametrize("method", sorted(TORCHSCRIPT_METHODS - {"saliency", "occlusion"}))
def test_every_other_supported_method_runs(registry_client, scripted, small_chelsea, method):
    """Through run_method, the path inline routes and workers share (some of these are job-only)."""
    params = {"target": "dog", "steps": 20} if method == "fooling_image" else {}
    result = run_method(method, "tiny-script", {"image": small_chelsea}, params, device="cpu")
    assert result.data["model"] == "tiny-script" and (result.images or result.arrays or result.data)


@pytest.mark.parametrize("method", ["guided_backprop", "gradcam", "activations"])
def test_unsupported_methods_refuse_with_a_reason(registry_client, scripted, small_chelsea, method):
    response = post(registry_client, method, "tiny-script", small_chelsea)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unsupported_model" and "TorchScript" in response.json()["detail"]


def test_a_job_for_an_unsupported_method_is_refused_before_queueing(registry_client, scripted, small_chelsea):
    upload = registry_client.post("/v1/images", files={"file": ("p.png", encode(small_chelsea, "PNG"), "image/png")})
    body = {"method": "deconvnet", "model": "tiny-script", "inputs": {"image": upload.json()["id"]}, "params": {}}
    response = registry_client.post("/v1/jobs", json=body)
    assert response.status_code == 422 and response.json()["code"] == "unsupported_model"


def test_layer_names_are_refused_for_torchscript(registry_client):
    meta = metadata("tiny-script-layers", SIZE, LABELS, gradcam_layer="features.5")
    response = register(registry_client, meta["name"], torchscript_bytes(tiny_net()), meta)
    assert response.status_code == 422 and response.json()["code"] == "invalid_metadata"
