"""Every bad input answers a clear 4xx problem document with a stable code, never a 500."""

import base64

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from tests.api.conftest import make_settings
from tests.pictures import encode, png_claiming

PHOTO = encode(Image.new("RGB", (48, 32), (90, 140, 200)))
B64 = base64.b64encode(PHOTO).decode()
PPM = encode(Image.new("RGB", (8, 8)), "PPM")
NESTED = b"[" * 5000 + b"]" * 5000  # well-formed JSON, nested past any parser's recursion limit


def upload(data: bytes = PHOTO, field: str = "image"):
    return {"files": [(field, ("photo", data, "application/octet-stream"))]}


def inputs(**slots):
    return {"json": {"inputs": slots}}


CLASSIFY_CASES = {
    "not-an-image": (upload(b"plain text, not a picture"), 400, "not_an_image"),
    "not-an-image-json": (inputs(image={"base64": base64.b64encode(b"plain text").decode()}), 400, "not_an_image"),
    "truncated": (upload(encode(Image.effect_noise((64, 64), 40).convert("RGB"), "JPEG")[:700]), 400, "bad_image"),
    "zero-bytes": (upload(b""), 400, "empty_image"),
    "decompression-bomb": (upload(png_claiming(50_000, 50_000)), 413, "image_too_large"),
    "decompression-bomb-json": (inputs(image={"base64": base64.b64encode(png_claiming(9_000, 9_000)).decode()}), 413, "image_too_large"),
    "zero-bytes-json": (inputs(image={"base64": ""}), 400, "empty_image"),
    "unsupported-format": (upload(PPM), 415, "unsupported_image_format"),
    "bad-base64": (inputs(image={"base64": "%%% not base64 %%%"}), 400, "bad_base64"),
    "malformed-image-id": (inputs(image={"image_id": "img_123"}), 404, "unknown_image"),
    "unknown-image-id": (inputs(image={"image_id": "0" * 32}), 404, "unknown_image"),
    "unknown-model": ({**upload(), "data": {"model": "resnet9000"}}, 404, "unknown_model"),
    "unknown-model-json": ({"json": {"model": "resnet9000", "inputs": {"image": {"base64": B64}}}}, 404, "unknown_model"),
    "model-without-classifier": ({**upload(), "data": {"model": "vgg19"}}, 422, "unsupported_model"),
    "param-out-of-range": ({**upload(), "data": {"params": '{"top_k": 0}'}}, 422, "invalid_params"),
    "param-wrong-choice-json": ({"json": {"params": {"fit": "zoom"}, "inputs": {"image": {"base64": B64}}}}, 422, "invalid_params"),
    "params-not-json": ({**upload(), "data": {"params": "{top_k: 3"}}, 400, "malformed_params"),
    "params-not-an-object": ({**upload(), "data": {"params": "[1, 2]"}}, 400, "malformed_params"),
    "params-not-an-object-json": ({"json": {"params": [1], "inputs": {"image": {"base64": B64}}}}, 422, "invalid_request"),
    "body-not-json": ({"content": b'{"inputs": ', "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    "body-not-an-object": ({"json": ["image"]}, 422, "invalid_request"),
    "unknown-top-level-key": ({"json": {"input": {}, "inputs": {"image": {"base64": B64}}}}, 422, "invalid_request"),
    "unknown-form-field": ({"files": [("image", ("a", PHOTO, "image/png")), ("mask", ("b", PHOTO, "image/png"))]}, 422, "unknown_field"),
    "missing-input": ({"files": [("params", (None, b"{}"))]}, 422, "missing_input"),
    "missing-input-json": (inputs(), 422, "missing_input"),
    "unknown-input-json": (inputs(image={"base64": B64}, mask={"base64": B64}), 422, "unknown_input"),
    "image-field-as-text": ({"files": [("image", (None, b"hello"))]}, 422, "invalid_field"),
    "too-many-pictures": (inputs(image=[{"base64": B64}] * 65), 422, "too_many_pictures"),
    "wrong-content-type": ({"content": PHOTO, "headers": {"content-type": "image/png"}}, 415, "unsupported_media_type"),
    "no-content-type": ({"content": PHOTO}, 415, "unsupported_media_type"),
    "broken-multipart": ({"content": b"no boundary here", "headers": {"content-type": "multipart/form-data"}}, 400, "malformed_multipart"),
    "not-acceptable": ({**upload(), "headers": {"accept": "text/html"}}, 406, "not_acceptable"),
    "body-nested-too-deep": ({"content": b'{"params": {"fit": ' + NESTED + b"}}", "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    "params-nested-too-deep": ({**upload(), "data": {"params": '{"fit": ' + NESTED.decode() + "}"}}, 400, "malformed_params"),
    "lone-surrogate-json": ({"content": b'{"model": "\\ud800", "inputs": {}}', "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
    "lone-surrogate-key-json": ({"content": b'{"params": {"\\udcff": 1}, "inputs": {}}', "headers": {"content-type": "application/json"}}, 400, "malformed_json"),
}


def assert_problem(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"] and body["type"].endswith(code)


@pytest.mark.parametrize("request_kwargs, status, code", CLASSIFY_CASES.values(), ids=CLASSIFY_CASES.keys())
def test_bad_classify_requests(client, request_kwargs, status, code):
    assert_problem(client.post("/v1/classify", **request_kwargs), status, code)


ONE_PICTURE_CASES = {  # activations does not batch: one picture a call
    "list-for-one-image": (inputs(image=[{"base64": B64}]), 422, "invalid_input"),
    "two-images-for-one": ({"files": [("image", ("a", PHOTO, "image/png")), ("image", ("b", PHOTO, "image/png"))]}, 422, "wrong_image_count"),
}


@pytest.mark.parametrize("request_kwargs, status, code", ONE_PICTURE_CASES.values(), ids=ONE_PICTURE_CASES.keys())
def test_a_method_that_does_not_batch_takes_one_picture(client, request_kwargs, status, code):
    assert_problem(client.post("/v1/activations", **request_kwargs), status, code)


PROBE_CASES = {
    "unknown-layer": ({"layer": "conv_head_nope"}, 404, "unknown_layer"),
    "unknown-channel": ({"layer": "conv_head", "channel": 5000}, 404, "unknown_channel"),
    "unknown-class": ({"target_class": "flying saucer"}, 404, "unknown_class"),
    "class-out-of-range": ({"target_class": 1000}, 404, "unknown_class"),
    "param-out-of-range": ({"size": 4}, 422, "invalid_params"),
}


@pytest.mark.parametrize("params, status, code", PROBE_CASES.values(), ids=PROBE_CASES.keys())
def test_unknown_layer_channel_class_through_a_registered_method(probe_client, params, status, code):
    body = {"params": params, "inputs": {"images": [{"base64": B64}, {"base64": B64}]}}
    assert_problem(probe_client.post("/v1/probe", json=body), status, code)


@pytest.mark.parametrize("count, code", [(0, "missing_input"), (1, "wrong_image_count"), (4, "wrong_image_count")])
def test_too_few_or_too_many_images_for_a_many_slot(probe_client, count, code):
    files = [("params", (None, b"{}"))] + [("images", (f"p{i}", PHOTO, "image/png")) for i in range(count)]
    as_form = probe_client.post("/v1/probe", files=files)
    as_json = probe_client.post("/v1/probe", json={"inputs": {"images": [{"base64": B64}] * count}})
    assert_problem(as_form, 422, code)
    assert_problem(as_json, 422, code)


def test_the_nth_bad_picture_is_named(probe_client):
    files = [("images", ("a", PHOTO, "image/png")), ("images", ("b", b"not a picture", "image/png"))]
    response = probe_client.post("/v1/probe", files=files)
    assert_problem(response, 400, "not_an_image")
    assert response.json()["input"] == "images[1]"


def test_unknown_method(client):
    assert_problem(client.post("/v1/no_such_method", json={}), 404, "unknown_method")


def test_pixels_over_the_limit_answer_413():
    with TestClient(create_app(make_settings(max_image_pixels=10_000))) as client:
        blank = encode(Image.new("RGB", (200, 200), "white"))
        assert_problem(client.post("/v1/classify", **upload(blank)), 413, "image_too_large")
        assert client.post("/v1/classify", **upload(encode(Image.new("RGB", (100, 100))))).status_code == 200


@pytest.mark.parametrize("request_kwargs", [
    {"content": NESTED, "headers": {"content-type": "application/json"}},
    {**upload(), "data": {"params": NESTED.decode()}},
], ids=["body", "params-field"])
def test_json_nested_too_deep_is_named(client, request_kwargs):
    body = client.post("/v1/classify", **request_kwargs).json()
    assert body["status"] == 400 and "not valid JSON" in body["detail"] and "recursion limit" in body["detail"]


@pytest.mark.parametrize("method, inputs", [("activations", {"image": {"base64": B64}}), ("filters", {})])
def test_an_empty_channel_list_is_refused(client, method, inputs):
    response = client.post(f"/v1/{method}", json={"params": {"layer": "conv_stem", "channels": []}, "inputs": inputs})
    assert_problem(response, 422, "invalid_params")
    assert "channels" in response.json()["detail"]


@pytest.mark.parametrize("encode_body", [lambda text: b"\xef\xbb\xbf" + text.encode(), lambda text: text.encode("utf-16")],
                         ids=["utf-8-with-bom", "utf-16"])
def test_json_bodies_are_read_in_every_encoding_json_allows(client, encode_body):
    text = '{"inputs": {"image": {"base64": "%s"}}}' % B64
    response = client.post("/v1/classify", content=encode_body(text), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
