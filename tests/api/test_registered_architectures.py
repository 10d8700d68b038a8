"""What a registered model lists as supported is what then works: five more torchvision architectures.

Random weights (format tests, never presented as pretrained), exported to
ONNX by the test, registered over HTTP. For every method, one that
``supported_methods`` lists answers 200 (inline over HTTP; job-only methods
through the worker's path, :func:`engine.run.prepare` then
:func:`engine.run.run_call`), and one it does not list is refused with its
422 and the same reason. Params are the cheapest that still run each method.
"""

import base64
import io
import json
import warnings

import numpy as np
import pytest
import torch
import torchvision

from engine.errors import UnsupportedModel
from engine.registry import all_methods
from engine.run import picture_counts, prepare, run_call
from tests.model_files import metadata, onnx_bytes, register, registry_client  # noqa: F401
from tests.pictures import encode

ARCHITECTURES = {  # name -> native side
    "mobilenet_v3_small": 64,
    "shufflenet_v2_x0_5": 64,
    "convnext_tiny": 64,
    "googlenet": 64,
    "inception_v3": 299,
}
LABELS = [f"class {i}" for i in range(10)]
METHODS = {method.name: method for method in all_methods()}  # the built-in methods (other test modules may add some)


def cheap(name: str, side: int) -> dict:
    """The cheapest params that still run ``name`` on a model of native side ``side``."""
    half = side // 2
    return {
        "occlusion": {"window": half, "stride": half},
        "smoothgrad": {"samples": 2},
        "integrated_gradients": {"steps": 2, "batch_size": 2},
        "segmentation": {"steps": 1},
        "embedding": {"projection": "pca"},
        "nearest_neighbors": {"top_k": 1},
        "max_activating_patches": {"channel": 0, "top_k": 2},
        "channel_overview": {"top_k": 2},
        "evaluate_attribution": {"methods": ["saliency"], "size": min(side, 224), "randomization": "none", "deletion_steps": 2},
        "fooling_image": {"target_class": 1, "steps": 1},
        "adversarial_untargeted": {"steps": 1},
        "universal_perturbation": {"steps": 1},
        "class_visualization": {"steps": 1, "size": side},
        "deepdream": {"steps": 1, "octaves": 1, "max_side": side},
        "feature_inversion": {"steps": 1, "max_side": side},
        "texture_synthesis": {"steps": 1, "height": side, "width": side},
        "style_transfer": {"steps": 1, "max_side": side, "scales": 1},
        "train_style_model": {"steps": 1, "batch_size": 1, "size": min(side, 128), "base_channels": 4, "residual_blocks": 1},
    }.get(name, {})


def architecture(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return getattr(torchvision.models, name)(num_classes=len(LABELS), **extra).eval()


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def registered(request, registry_client):
    name, side = request.param, ARCHITECTURES[request.param]
    model = f"random-{name.replace('_', '-')}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = onnx_bytes(architecture(name), (side, side))
    answer = register(registry_client, model, data, metadata(model, (side, side), LABELS))
    assert answer.status_code == 201, answer.text
    described = answer.json()
    return model, side, {entry["method"]: entry for entry in described["supported_methods"]}


def picture(side: int) -> dict:
    from PIL import Image

    return {"base64": base64.b64encode(encode(Image.new("RGB", (side + 7, side), "teal"), "PNG")).decode()}


def inputs_for(method, side: int) -> dict:
    return {slot.name: [picture(side)] * max(slot.min_count, 2) if slot.many else picture(side)
            for slot in method.inputs if not slot.optional}


def test_every_method_is_listed_with_a_reason_when_refused(registered):
    _model, _side, support = registered
    assert set(support) == {method.name for method in all_methods()}
    assert all(entry["supported"] or entry["reason"] for entry in support.values())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_listed_method_answers_and_an_unlisted_one_is_refused(registry_client, registered, name, small_chelsea):
    model, side, support = registered
    method, params = METHODS[name], cheap(name, side)
    if method.inline:
        body = {"model": model, "params": params, "inputs": inputs_for(method, side)}
        answer = registry_client.post(f"/v1/{name}", json=body)
        if support[name]["supported"]:
            assert answer.status_code == 200, answer.text
        else:
            assert answer.status_code == 422 and answer.json()["code"] == "unsupported_model", answer.text
            assert answer.json()["detail"] == support[name]["reason"]
        return
    models = registry_client.app.state.model_store().spec_for
    pictures = {slot.name: [small_chelsea] * max(slot.min_count, 2) if slot.many else small_chelsea
                for slot in method.inputs if not slot.optional}
    if not support[name]["supported"]:
        with pytest.raises(UnsupportedModel, match=support[name]["reason"][:40]):
            prepare(name, model, params, picture_counts(pictures), "public", models=models)
        return
    call = prepare(name, model, params, picture_counts(pictures), "public", models=models)  # the worker's path: open access's tenant
    result = run_call(call, pictures, device="cpu")
    assert result.first_non_finite() is None
    json.dumps(result.data)


@pytest.mark.parametrize("registered", ["shufflenet_v2_x0_5", "convnext_tiny"], indirect=True)
def test_guided_backprop_and_the_receptive_field_plan_work_on_shufflenet_and_convnext(registry_client, registered):
    """Their ONNX graphs trace once onnx2torch's dtype branches are resolved at conversion (the fix this checks)."""
    model = registered[0]
    described = registry_client.get(f"/v1/models/{model}").json()
    assert described["capabilities"]["relu_rules"] is None and described["capabilities"]["incremental_occlusion"] is None
    body = {"model": model, "inputs": {"image": picture(64)}}
    assert registry_client.post("/v1/guided_backprop", json=body).status_code == 200
    maps = {}
    for strategy in ("auto", "brute_force"):
        answer = registry_client.post("/v1/occlusion?embed=all", json={**body, "params": {"window": 16, "stride": 8, "strategy": strategy}})
        assert answer.status_code == 200, answer.text
        maps[answer.json()["data"]["strategy"]] = array_of(answer.json(), "map")
    assert set(maps) == {"receptive_field", "brute_force"}
    scale = float(np.abs(maps["brute_force"]).max())
    np.testing.assert_allclose(maps["receptive_field"], maps["brute_force"], rtol=0, atol=1e-5 * max(scale, 1e-6))


def array_of(answer: dict, name: str) -> np.ndarray:
    found = next(a for a in answer["artifacts"] if a["name"] == name)
    return np.load(io.BytesIO(base64.b64decode(found["data_base64"])), allow_pickle=False)
