"""One request, several pictures, for the one-picture methods that batch (classify and the gradient
attributions): one answer per picture in order, equal to the single calls'; a picture that cannot be
read is reported in its own slot; the inline budget counts every picture."""

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from tests.api.conftest import make_settings
from tests.pictures import encode


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(make_settings(storage_dir=str(tmp_path_factory.mktemp("several")), inline_max_batch=2))) as client:
        yield client


@pytest.fixture(scope="module")
def photos(chelsea, coffee, astronaut) -> list[bytes]:
    return [encode(picture.resize((120, 96))) for picture in (chelsea, coffee, astronaut)]


def b64(data: bytes) -> dict:
    return {"base64": base64.b64encode(data).decode()}


def test_multipart_pictures_are_answered_each_in_order_as_alone(client, photos):
    files = [("image", (f"{name}.png", data, "image/png")) for name, data in zip(("cat", "cup", "astronaut"), photos)]
    answer = client.post("/v1/saliency?embed=map", files=files, data={"params": '{"target_class": "espresso"}'})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["picture"]["name"] for r in results] == ["cat.png", "cup.png", "astronaut.png"]
    for data, result in zip(photos, results):
        alone = client.post("/v1/saliency?embed=map", files={"image": ("p.png", data, "image/png")}, data={"params": '{"target_class": "espresso"}'}).json()
        assert result["data"]["target"]["label"] == alone["data"]["target"]["label"] == "espresso"
        assert result["data"]["target"]["score"] == pytest.approx(alone["data"]["target"]["score"], rel=1e-5)
        ours, theirs = (np.load(io.BytesIO(base64.b64decode(next(a for a in r["artifacts"] if a["name"] == "map")["data_base64"])))
                        for r in (result, alone))
        assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


def test_an_unreadable_picture_is_reported_in_its_slot_and_the_others_answered(client, photos):
    pictures = [b64(photos[0]), b64(b"not a picture at all"), {"image_id": "f" * 32}, b64(photos[1])]
    answer = client.post("/v1/classify", json={"inputs": {"image": pictures}, "params": {"top_k": 1}})
    assert answer.status_code == 200, answer.text
    first, unreadable, unknown, last = answer.json()["results"]
    assert first["data"]["top"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}
    assert (unreadable["problem"]["status"], unreadable["problem"]["code"]) == (400, "not_an_image") and "data" not in unreadable
    assert (unknown["problem"]["status"], unknown["problem"]["code"]) == (404, "unknown_image")
    assert last["data"]["top"][0]["label"] == "espresso" and last["picture"]["position"] == 3


def test_a_collection_is_answered_picture_by_picture_with_names(client):
    samples = client.get("/v1/collections/samples").json()["images"]
    answer = client.post("/v1/classify", json={"inputs": {"image": {"collection": "samples"}}, "params": {"top_k": 1}})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [(r["picture"]["id"], r["picture"]["name"]) for r in results] == [(s["id"], s["name"]) for s in samples]
    assert next(r for r in results if r["picture"]["name"] == "coffee")["data"]["top"][0]["label"] == "espresso"


def test_the_budget_counts_every_picture(tmp_path, photos):
    settings = make_settings(storage_dir=str(tmp_path), inline_max_passes=5)  # saliency: 2 passes a picture
    with TestClient(create_app(settings)) as small:
        two = small.post("/v1/saliency", json={"inputs": {"image": [b64(photos[0]), b64(photos[1])]}})
        three = small.post("/v1/saliency", json={"inputs": {"image": [b64(p) for p in photos]}})
    assert two.status_code == 200, two.text
    assert three.status_code == 422 and three.json()["code"] == "over_inline_budget", three.text


def test_several_pictures_answer_json_only_and_one_picture_keeps_its_answer(client, photos):
    refused = client.post("/v1/classify", json={"inputs": {"image": [b64(p) for p in photos]}}, headers={"accept": "image/png"})
    assert refused.status_code == 406 and refused.json()["code"] == "not_acceptable"
    single = client.post("/v1/classify", json={"inputs": {"image": b64(photos[1])}}).json()
    assert "results" not in single and single["data"]["top"][0]["label"] == "espresso"
    listed = client.post("/v1/classify", json={"inputs": {"image": [b64(photos[1])]}}).json()
    assert listed["results"][0]["data"]["top"] == single["data"]["top"]
    png = client.post("/v1/classify", files={"image": ("a.png", photos[1], "image/png")}, headers={"accept": "image/png"})
    assert Image.open(io.BytesIO(png.content)).format == "PNG"
