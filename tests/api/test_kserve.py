"""KServe's V1 protocol: POST /v1/models/{name}:predict and :explain over the real EfficientNet, on small real photos.

The shapes are those of KServe's "Inference Protocol V1" page
(https://kserve.github.io/website/docs/concepts/architecture/data-plane/v1-protocol): a body
``{"instances": [...]}`` or ``{"inputs": [...]}``; ``:predict`` answers ``{"predictions": [...]}`` and
``:explain`` ``{"predictions": [...], "explanations": [...]}``, one item per instance, in order. The
picture forms are those KServe's docs send: ``{"image": {"b64"}}`` (custom predictor and transformer),
``{"image_bytes": {"b64"}, "key"}`` (TensorFlow, Triton; the key comes back in the answer),
``{"data": <base64>}`` (TorchServe, batcher) and nested lists of pixel values (the Alibi and AIX
explainer examples send ``image.tolist()``). Every answer is compared with the native route's.
"""

import base64
import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.kserve_server import configure
from api.routes.kserve import KServeExplainAnswer, KServePredictAnswer
from tests.api.conftest import ADMIN_KEY, make_settings
from tests.api.test_model_tenancy import assert_unknown_model, headers, key, register_as
from tests.e2e.servers import RedisServer
from tests.pictures import encode

MODEL = "efficientnet_lite0"


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(make_settings(kserve_models={"cat-classifier": MODEL}))) as client:
        yield client


@pytest.fixture(scope="module")
def pictures(small_chelsea, coffee):
    """Two small photos as PNG (lossless, so pixel-value instances are the same pictures)."""
    return [small_chelsea, coffee.resize((80, 60))]


def b64(picture: Image.Image) -> str:
    return base64.b64encode(encode(picture)).decode()


def native(client, method: str, picture: Image.Image, params: dict | None = None) -> tuple[np.ndarray, dict]:
    """The native route's raw map (its .npy artifact) and its data."""
    body = {"model": MODEL, "params": params or {}, "inputs": {"image": {"base64": b64(picture)}}}
    npy = client.post(f"/v1/{method}?artifact=map", json=body, headers={"accept": "application/x-npy"})
    assert npy.status_code == 200, npy.text
    data = client.post(f"/v1/{method}", json=body).json()["data"]
    return np.load(io.BytesIO(npy.content)), data


def classified(client, picture: Image.Image, params: dict | None = None) -> list[dict]:
    answer = client.post("/v1/classify", json={"model": MODEL, "params": params or {}, "inputs": {"image": {"base64": b64(picture)}}})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["top"]


def kserve(client, verb: str, body: dict, model: str = MODEL, **kwargs):
    return client.post(f"/v1/models/{model}:{verb}", json=body, **kwargs)


@pytest.mark.parametrize("parameters, method", [({}, "saliency"), ({"method": "gradcam"}, "gradcam")], ids=["default", "gradcam"])
def test_explain_returns_the_native_map_in_kserves_shape(client, small_chelsea, parameters, method):
    answer = kserve(client, "explain", {"instances": [{"image": {"b64": b64(small_chelsea)}}], "parameters": parameters})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"predictions", "explanations"}
    KServeExplainAnswer.model_validate(body)  # as the OpenAPI document says
    [explanation], [prediction] = body["explanations"], body["predictions"]
    expected, data = native(client, method, small_chelsea)
    np.testing.assert_array_equal(np.asarray(explanation["map"], dtype=np.float32), expected)
    assert explanation["shape"] == list(expected.shape) and explanation["method"] == method
    assert explanation["target"] == data["target"] and explanation["target"]["label"] == prediction["label"]
    assert (explanation["layer"], explanation["sign"]) == (data["layer"], data["sign"])
    assert prediction["top"] == classified(client, small_chelsea)


def test_explain_takes_the_methods_params_beside_the_method(client, small_chelsea):
    parameters = {"method": "gradcam", "target_class": "tabby", "fit": "crop"}
    answer = kserve(client, "explain", {"instances": [{"b64": b64(small_chelsea)}], "parameters": {**parameters, "top_k": 2}})
    assert answer.status_code == 200, answer.text
    [explanation], [prediction] = answer.json()["explanations"], answer.json()["predictions"]
    expected, data = native(client, "gradcam", small_chelsea, {"target_class": "tabby", "fit": "crop"})
    np.testing.assert_array_equal(np.asarray(explanation["map"], dtype=np.float32), expected)
    assert explanation["target"]["label"] == "tabby" == data["target"]["label"]
    assert prediction["top"] == classified(client, small_chelsea, {"fit": "crop", "top_k": 2})


def test_predict_returns_the_top_classes_of_classify(client, small_chelsea):
    answer = kserve(client, "predict", {"instances": [{"image_bytes": {"b64": b64(small_chelsea)}}], "parameters": {"top_k": 3}})
    assert answer.status_code == 200, answer.text
    [prediction] = answer.json()["predictions"]
    assert set(answer.json()) == {"predictions"}
    KServePredictAnswer.model_validate(answer.json())
    top = classified(client, small_chelsea, {"top_k": 3})
    assert prediction == {"index": top[0]["index"], "label": top[0]["label"], "probability": top[0]["probability"], "top": top}


def test_two_instances_are_answered_in_order_with_their_keys(client, pictures):
    chelsea, coffee = pictures
    instances = [{"image_bytes": {"b64": b64(coffee)}, "key": "1"}, {"image": {"b64": b64(chelsea)}, "key": {"photo": "cat"}}]
    # the instances run as one batch: equal to one call each up to float rounding (relative error 1e-5)
    predicted = kserve(client, "predict", {"instances": instances}).json()["predictions"]
    for prediction, alone in zip(predicted, [classified(client, coffee), classified(client, chelsea)]):
        assert [(c["index"], c["label"]) for c in prediction["top"]] == [(c["index"], c["label"]) for c in alone]
        assert [c["probability"] for c in prediction["top"]] == pytest.approx([c["probability"] for c in alone], rel=1e-5)
    assert predicted[0]["label"] == "espresso" and [p["key"] for p in predicted] == ["1", {"photo": "cat"}]
    explained = kserve(client, "explain", {"instances": instances}).json()
    for position, picture in enumerate((coffee, chelsea)):
        alone = native(client, "saliency", picture)[0]
        np.testing.assert_allclose(np.asarray(explained["explanations"][position]["map"], dtype=np.float32), alone,
                                   rtol=1e-5, atol=1e-5 * float(np.abs(alone).max()))
        assert explained["explanations"][position]["key"] == instances[position]["key"]
    assert explained["predictions"] == predicted


def test_every_picture_form_of_kserves_docs_is_the_same_picture(client, small_chelsea):
    data, pixels = b64(small_chelsea), np.asarray(small_chelsea)
    forms = [
        {"image": {"b64": data}},
        {"image_bytes": {"b64": data}},
        {"data": data},
        {"b64": data},
        pixels.tolist(),
        (pixels / 255).tolist(),  # with max_pixel_value 1 below
        {"data": pixels.tolist()},
    ]
    for position, form in enumerate(forms):
        parameters = {"max_pixel_value": 1} if position == 5 else {}
        for root in ("instances", "inputs"):
            answer = kserve(client, "predict", {root: [form], "parameters": parameters})
            assert answer.status_code == 200, (position, root, answer.text)
            assert answer.json()["predictions"][0]["top"] == classified(client, small_chelsea), (position, root)


@pytest.mark.parametrize("bad, status, code", [
    ({"picture": "abc"}, 422, "invalid_instance"),  # not a form of KServe's docs
    ({"image": {"b64": "x", "mode": "RGB"}}, 422, "invalid_instance"),
    ({"data": "x", "target": 3}, 422, "invalid_instance"),  # the class goes in parameters.target_class
    ([[[1, 2]]], 422, "bad_pixels"),  # two channels
    ([[0, 300]], 422, "bad_pixels"),  # out of 0..255
    ({"b64": "not base64!"}, 400, "bad_base64"),  # a picture's own errors keep the service's statuses
    ({"b64": base64.b64encode(b"not a picture").decode()}, 400, "not_an_image"),
])
def test_a_bad_instance_is_refused_naming_it(client, small_chelsea, bad, status, code):
    for verb in ("predict", "explain"):
        answer = kserve(client, verb, {"instances": [{"b64": b64(small_chelsea)}, bad]})
        assert (answer.status_code, answer.headers["content-type"]) == (status, "application/problem+json"), answer.text
        problem = answer.json()
        assert problem["code"] == code and problem["input"] == "instances[1]" and "instances[1]" in problem["detail"]


@pytest.mark.parametrize("body, code, words", [
    ({"instances": []}, "invalid_request", "at least one"),
    ({"instances": [{"b64": "x"}], "inputs": [{"b64": "x"}]}, "invalid_request", "not both"),
    ({"instances": [{"b64": "x"}], "signature_name": "serving_default"}, "unknown_field", "signature_name"),
    ({"instances": [{"b64": "x"}], "parameters": {"method": "classify"}}, "invalid_params", "saliency"),
    ({"instances": [{"b64": "x"}], "parameters": {"method": "gradcam", "steps": 3}}, "invalid_params", "steps"),
    ({"instances": [{"b64": "x"}], "parameters": {"max_pixel_value": 0}}, "invalid_params", "max_pixel_value"),
    ({"instances": [{"b64": "x"}], "parameters": ["gradcam"]}, "invalid_params", "object"),
])
def test_a_bad_request_is_a_422_saying_what_to_change(client, body, code, words):
    answer = kserve(client, "explain", body)
    assert (answer.status_code, answer.json()["code"]) == (422, code), answer.text
    assert words in answer.json()["detail"]


def test_a_kserve_name_stands_for_a_model_and_other_names_are_model_names(client, small_chelsea):
    body = {"instances": [{"b64": b64(small_chelsea)}]}
    assert kserve(client, "predict", body, "cat-classifier").json() == kserve(client, "predict", body).json()
    for verb in ("predict", "explain"):
        assert_unknown_model(kserve(client, verb, body, "dog-classifier"), "dog-classifier")
    assert kserve(client, "explain", {**body, "parameters": {"method": "gradcam"}}, "vgg19").json()["code"] == "unsupported_model"


def test_a_model_with_no_classes_is_explained_without_predictions(client, small_chelsea):
    parameters = {"method": "guided_backprop", "layer": "block3_conv1", "channel": 5}
    answer = kserve(client, "explain", {"instances": [{"b64": b64(small_chelsea)}], "parameters": parameters}, "vgg19")
    assert answer.status_code == 200, answer.text
    [explanation] = answer.json()["explanations"]
    assert set(answer.json()) == {"explanations"} and explanation["target"]["channel"] == 5
    KServeExplainAnswer.model_validate(answer.json())


def test_the_colon_routes_leave_the_model_routes_alone(client):
    """GET /v1/models/{name} still describes the model; the verbs are POST routes of their own."""
    described = client.get(f"/v1/models/{MODEL}")
    assert described.status_code == 200 and described.json()["name"] == MODEL
    assert client.get(f"/v1/models/{MODEL}:explain").json()["code"] == "unknown_model"  # no model is named so
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/models/{name}", "/v1/models/{name}:predict", "/v1/models/{name}:explain"} <= set(paths)
    assert set(paths["/v1/models/{name}:explain"]) == {"post"}


def test_the_whole_request_fits_the_inline_budget(small_chelsea):
    """Passes add up over the instances: saliency (2) and classify (1) per instance, 5 allowed."""
    with TestClient(create_app(make_settings(inline_max_passes=5))) as client:
        one = {"instances": [{"b64": b64(small_chelsea)}]}
        assert kserve(client, "explain", one).status_code == 200
        refused = kserve(client, "explain", {"instances": one["instances"] * 2})
        assert (refused.status_code, refused.json()["code"]) == (422, "over_inline_budget")
        assert "2 instance(s) of saliency" in refused.json()["detail"] and refused.json()["cost"]["passes"] == 6


@pytest.fixture(scope="module")
def tenants(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kserve-tenancy")
    server = RedisServer(tmp / "redis").start()
    settings = make_settings(open_access=False, admin_key=ADMIN_KEY, redis_url=server.url, storage_dir=str(tmp / "storage"))
    try:
        with TestClient(create_app(settings)) as client:
            alice, bob = key(client, "submit", "alice"), key(client, "submit", "bob")
            assert register_as(client, key(client, "models", "alice"), "a-net", classes=4).status_code == 201
            yield SimpleNamespace(client=client, alice=alice, bob=bob, reader=key(client, "read", "alice"))
    finally:
        server.stop()


def test_another_tenants_model_is_unknown_through_the_kserve_verbs(tenants):
    body = {"instances": [{"b64": base64.b64encode(encode(Image.new("RGB", (48, 40), "teal"))).decode()}]}
    client = tenants.client
    for verb in ("predict", "explain"):
        assert kserve(client, verb, body, "a-net", headers=headers(tenants.alice)).status_code == 200
        assert_unknown_model(kserve(client, verb, body, "a-net", headers=headers(tenants.bob)))
        refused = kserve(client, verb, body, "a-net", headers=headers(tenants.reader))
        assert (refused.status_code, refused.json()["code"]) == (403, "insufficient_scope")
        assert kserve(client, verb, body, "a-net").status_code == 401


def test_an_explainer_container_with_only_the_bootstrap_key_needs_no_redis(small_chelsea):
    """docs/kserve.md: with CONVLENS_ADMIN_KEY alone (no Redis reachable) the built-in models are served."""
    settings = make_settings(open_access=False, admin_key=ADMIN_KEY, redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as client:
        answer = kserve(client, "explain", {"instances": [{"b64": b64(small_chelsea)}]}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert answer.status_code == 200, answer.text
        assert kserve(client, "explain", {"instances": [{"b64": b64(small_chelsea)}]}).status_code == 401


def test_the_container_takes_the_arguments_kserve_appends():
    """KServe appends --model_name, --predictor_host, --http_port (and --workers) to a custom explainer's args."""
    argv = ["--model", MODEL, "--model_name", "cat-classifier", "--predictor_host", "cat-classifier-predictor.default",
            "--http_port", "8080", "--workers", "2", "--storage_uri=/mnt/models"]
    options, env, ignored = configure(argv, {"CONVLENS_KSERVE_MODELS": '{"other": "vgg19"}'})
    assert (options["host"], options["port"], options["workers"]) == ("0.0.0.0", 8080, 2)
    assert json.loads(env["CONVLENS_KSERVE_MODELS"]) == {"other": "vgg19", "cat-classifier": MODEL}
    assert ignored == ["--storage_uri=/mnt/models"]
    _, env, _ = configure(["--model_name=efficientnet_lite0"], {})
    assert json.loads(env["CONVLENS_KSERVE_MODELS"]) == {MODEL: MODEL}
