"""Round trip on real weights: the built-in EfficientNet-Lite0, exported to ONNX and to torch.export inside
the test, registered over HTTP, explains chelsea exactly as the built-in does."""

import base64
import io

import numpy as np
import pytest

from engine.models.folding import folded
from engine.models import find_spec, load_model
from engine.relu_rules import rule_copy
from tests.model_files import IMAGENET_PRE, onnx_bytes, pt2_bytes, register, registry_client  # noqa: F401
from tests.pictures import encode

BUILTIN = "efficientnet_lite0"
METHODS = {  # explicit fit: the maps are compared as before eval_fit (classify checks the declared eval_fit)
    "saliency": {"fit": "stretch"},
    "guided_backprop": {"fit": "stretch"},
    "gradcam": {"fit": "stretch"},
    "occlusion": {"window": 56, "stride": 56, "fit": "stretch"},
}
EXPORTERS = {"onnx": lambda net: onnx_bytes(net, (224, 224)), "torch_export": lambda net: pt2_bytes(net, (224, 224))}


def call(client, method: str, model: str, image: bytes, params: dict) -> dict:
    body = {"model": model, "params": params, "inputs": {"image": {"base64": base64.b64encode(image).decode()}}}
    response = client.post(f"/v1/{method}?embed=all", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def arrays(answer: dict) -> dict[str, np.ndarray]:
    return {
        a["name"]: np.load(io.BytesIO(base64.b64decode(a["data_base64"])), allow_pickle=False)
        for a in answer["artifacts"] if a["kind"] == "array"
    }


@pytest.fixture(scope="module", params=[
    "onnx", pytest.param("torch_export", marks=pytest.mark.slow),
])
def copy(request, registry_client, efficientnet):
    fmt = request.param
    name = f"lite0-{fmt.replace('_', '-')}"
    meta = {"name": name, "preprocessing": IMAGENET_PRE, "input_size": [224, 224], "labels": "imagenet", "eval_fit": "crop"}
    response = register(registry_client, name, EXPORTERS[fmt](efficientnet.net), meta)
    assert response.status_code == 201, response.text
    described = response.json()
    assert described["format"] == fmt
    return described


@pytest.fixture(scope="module")
def photo(chelsea) -> bytes:
    return encode(chelsea, "PNG")


def test_classify_gives_the_builtin_top5(registry_client, copy, photo):
    ours = call(registry_client, "classify", copy["name"], photo, {"top_k": 5})["data"]["top"]
    theirs = call(registry_client, "classify", BUILTIN, photo, {"top_k": 5})["data"]["top"]
    assert [e["label"] for e in ours] == [e["label"] for e in theirs]
    assert theirs[0]["label"] in {"Egyptian cat", "tiger cat", "tabby"}
    np.testing.assert_allclose([e["probability"] for e in ours], [e["probability"] for e in theirs], atol=1e-4, rtol=0)


def test_the_converted_graph_carries_a_rule_on_every_relu6(registry_client, copy):
    registered = find_spec(copy["name"], "public", registry_client.app.state.model_store().spec_for)  # open access: tenant public
    ours = rule_copy(folded(load_model(registered, "cpu")), "guided").gates
    theirs = rule_copy(folded(load_model(BUILTIN, "cpu")), "guided").gates
    assert ours == theirs == 33  # conv_stem + 16 blocks' ReLU6s (1 + 2*16), in-place ones included


@pytest.mark.parametrize("method", list(METHODS))
def test_maps_equal_the_builtins(registry_client, copy, photo, method):
    params = dict(METHODS[method])
    builtin_params = {**params, "layer": "bn2"} if method == "gradcam" else params  # conv_head + BN + ReLU6
    ours = call(registry_client, method, copy["name"], photo, params)
    theirs = call(registry_client, method, BUILTIN, photo, builtin_params)
    if method == "occlusion":
        assert ours["data"]["strategy"] == theirs["data"]["strategy"] == "receptive_field"
    if method == "gradcam":
        assert ours["data"]["layer"] == copy["default_layer"]
    mine, reference = arrays(ours), arrays(theirs)
    assert set(mine) == set(reference) and mine
    for name, expected in reference.items():
        peak = float(np.abs(expected).max())
        assert peak > 0
        np.testing.assert_allclose(mine[name], expected, rtol=1e-3, atol=1e-4 * peak, err_msg=f"{method} {name}")
