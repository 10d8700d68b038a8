"""Inline methods take uploaded images by id: POST /v1/images, then {"image_id": ...} anywhere a picture goes."""

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings
from tests.pictures import encode


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = make_settings(storage_dir=str(tmp_path_factory.mktemp("image-refs")))
    with TestClient(create_app(settings)) as client:
        yield client


def classify(client, picture: dict, **params):
    return client.post("/v1/classify", json={"inputs": {"image": picture}, "params": params})


def test_an_uploaded_image_classifies_as_its_base64_form_does(client, coffee):
    data = encode(coffee.resize((128, 96)), "JPEG", quality=90)
    image_id = client.post("/v1/images", files={"file": ("coffee.jpg", data, "image/jpeg")}).json()["id"]
    by_id = classify(client, {"image_id": image_id}, top_k=3)
    inline = classify(client, {"base64": base64.b64encode(data).decode()}, top_k=3)
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["data"]["top"] == inline.json()["data"]["top"]
    assert by_id.json()["data"]["top"][0]["label"] == "espresso"
    png = client.post("/v1/classify", json={"inputs": {"image": {"image_id": image_id}}}, headers={"accept": "image/png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"


def test_many_slots_mix_ids_and_inline_pictures(probe_method, client, chelsea, coffee):
    with TestClient(create_app(client.app.state.settings)) as probe_client:
        cat = probe_client.post("/v1/images", files={"file": ("cat.png", encode(chelsea), "image/png")}).json()["id"]
        pictures = [{"image_id": cat}, {"base64": base64.b64encode(encode(coffee)).decode()}]
        response = probe_client.post("/v1/probe?embed=sizes", json={"inputs": {"images": pictures}})
        assert response.status_code == 200, response.text
        sizes = next(a for a in response.json()["artifacts"] if a["name"] == "sizes")
        assert np.load(io.BytesIO(base64.b64decode(sizes["data_base64"]))).tolist() == [list(chelsea.size), list(coffee.size)]


@pytest.mark.parametrize("image_id", ["0" * 32, "f" * 32, "img_123", "../../etc/passwd", "A" * 32, ""])
def test_unknown_or_malformed_ids_are_404(client, image_id):
    response = classify(client, {"image_id": image_id})
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unknown_image"
