"""One way to name a picture, in inline calls and jobs alike (real Redis): an uploaded image's id as a
bare string, {"image_id"} or {"id"}, or the file as {"base64"}; anything else is one 422 sentence with
the forms to use, never a validator's union trace."""

import base64

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.test_keys_and_tenancy import assert_problem, make_key, upload
from tests.pictures import encode

WRONG = [42, {"url": "http://example.com/cat.png"}, {"image_id": 5}, {"image_id": "a", "base64": "b"}]
NOISE = ("Base64Image", "StoredImage", "union", "Value error")


@pytest.fixture(scope="module")
def photo(coffee) -> bytes:
    return encode(coffee.resize((96, 72)))


@pytest.fixture
def client(keyed_settings):
    with TestClient(create_app(keyed_settings)) as client:
        yield client


def forms(image_id: str, photo: bytes) -> dict:
    return {"bare id": image_id, "image_id": {"image_id": image_id}, "id": {"id": image_id},
            "base64": {"base64": base64.b64encode(photo).decode()}}


def test_every_form_names_the_same_picture_inline(client, photo):
    key = make_key(client, "submit")
    image_id = upload(client, key, photo)
    answers = {name: client.post("/v1/classify", json={"inputs": {"image": given}, "params": {"top_k": 3}}, headers=key)
               for name, given in forms(image_id, photo).items()}
    assert all(answer.status_code == 200 for answer in answers.values()), {n: a.text for n, a in answers.items()}
    tops = [answer.json()["data"]["top"] for answer in answers.values()]
    assert tops[0][0]["label"] == "espresso" and all(top == tops[0] for top in tops)


def test_every_form_names_the_same_picture_in_a_job(client, photo):
    key = make_key(client, "submit")
    image_id = upload(client, key, photo)
    jobs = {}
    for name, given in forms(image_id, photo).items():
        answer = client.post("/v1/jobs", json={"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": given}}, headers=key)
        assert answer.status_code == 202, (name, answer.text)
        jobs[name] = answer.json()
    assert {job["inputs"]["image"] for job in jobs.values()} == {image_id}  # the base64 picture was stored as that upload
    assert len({job["id"] for job in jobs.values()}) == 1  # identical submissions share one job


@pytest.mark.parametrize("given", WRONG, ids=repr)
def test_a_wrong_form_is_one_sentence_with_the_forms_inline_and_as_a_job(client, given):
    key = make_key(client, "submit")
    inline = client.post("/v1/classify", json={"inputs": {"image": given}}, headers=key)
    job = client.post("/v1/jobs", json={"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": given}}, headers=key)
    for answer in (inline, job):
        body = assert_problem(answer, 422, "invalid_input")
        assert body["input"] == "image" and '{"image_id": "<image id>"}' in body["detail"], body["detail"]
        assert not any(word in body["detail"] for word in NOISE), body["detail"]
    assert inline.json()["detail"] == job.json()["detail"]


def test_a_params_union_gets_one_line_naming_what_it_takes(client, photo):
    key = make_key(client, "submit")
    body = {"inputs": {"image": {"base64": base64.b64encode(photo).decode()}}, "params": {"target_class": [1]}}
    detail = assert_problem(client.post("/v1/saliency", json=body, headers=key), 422, "invalid_params")["detail"]
    assert "target_class: expected an integer or a string, got [1]" in detail, detail
    assert not any(word in detail for word in NOISE), detail


@pytest.mark.parametrize("given", ["", {"image_id": ""}, {"id": ""}])
def test_an_empty_id_is_an_unknown_image_inline_and_as_a_job(client, given):
    key = make_key(client, "submit")
    inline = client.post("/v1/classify", json={"inputs": {"image": given}}, headers=key)
    job = client.post("/v1/jobs", json={"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": given}}, headers=key)
    for answer in (inline, job):
        assert_problem(answer, 404, "unknown_image")
