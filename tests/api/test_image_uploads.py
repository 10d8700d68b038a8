"""POST /v1/images over HTTP: stored once, read back, bad pictures refused, bodies over the limit 413."""

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from tests.api.conftest import make_settings
from tests.pictures import encode

LIMIT = 50_000


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    storage = tmp_path_factory.mktemp("uploads")
    with TestClient(create_app(make_settings(storage_dir=str(storage), max_upload_bytes=LIMIT))) as client:
        yield client, storage


def test_upload_is_stored_once_and_reads_back(uploads, small_chelsea):
    client, _ = uploads
    data = encode(small_chelsea, "JPEG")
    first = client.post("/v1/images", files={"file": ("cat.jpg", data, "image/jpeg")})
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["width"], body["height"], body["format"], body["media_type"]) == (96, 64, "JPEG", "image/jpeg")
    assert first.headers["Location"] == body["url"] == f"/v1/images/{body['id']}"
    again = client.post("/v1/images", content=data, headers={"content-type": "image/jpeg"})  # raw body form
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    read = client.get(body["url"])
    assert read.status_code == 200 and read.content == data and read.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("data, status, code", [
    (encode(Image.new("RGB", (8, 8)), "PPM"), 415, "unsupported_image_format"),
    (b"plain text, not a picture", 400, "not_an_image"),
    (encode(Image.effect_noise((64, 64), 40).convert("RGB"), "PNG")[:-300], 400, "bad_image"),
    (encode(Image.new("F", (8, 8), float("nan")), "TIFF"), 400, "bad_image"),  # not made black
])
def test_bad_pictures_are_refused_with_their_code(uploads, data, status, code):
    client, _ = uploads
    response = client.post("/v1/images", files={"file": ("x", data, "application/octet-stream")})
    assert response.status_code == status and response.json()["code"] == code
    assert response.headers["content-type"] == "application/problem+json"
    if data.startswith(b"II*"):
        assert "NaN or infinite" in response.json()["detail"]


def test_missing_file_and_unknown_or_malformed_ids(uploads):
    client, _ = uploads
    assert client.post("/v1/images", files={"other": ("x", b"abc", "image/png")}).json()["code"] == "missing_file"
    for image_id in ("0" * 32, "not-an-id"):
        response = client.get(f"/v1/images/{image_id}")
        assert response.status_code == 404 and response.json()["code"] == "unknown_image"


def assert_too_large(response):
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "payload_too_large"


def test_upload_over_the_limit_is_refused_and_not_stored(uploads):
    client, storage = uploads
    stored = set(storage.glob("images/*"))
    noise = encode(Image.effect_noise((200, 200), 80).convert("RGB"))  # incompressible: over 50 kB
    assert len(noise) > LIMIT
    assert_too_large(client.post("/v1/images", files={"file": ("big.png", noise, "image/png")}))
    assert_too_large(client.post("/v1/images", content=noise, headers={"content-type": "image/png"}))

    def chunks():
        for start in range(0, len(noise), 4096):
            yield noise[start:start + 4096]

    chunked = client.post("/v1/images", content=chunks(), headers={"content-type": "image/png"})
    assert "content-length" not in chunked.request.headers
    assert_too_large(chunked)
    assert set(storage.glob("images/*")) == stored


def test_more_files_or_fields_than_an_upload_takes_are_refused_by_their_limit(uploads, small_chelsea):
    client, storage = uploads
    stored = set(storage.glob("images/*"))
    data = encode(small_chelsea.resize((16, 16)), "PNG")
    two = client.post("/v1/images", files=[("file", ("a.png", data, "image/png")), ("file", ("b.png", data, "image/png"))])
    assert two.status_code == 413 and two.headers["content-type"] == "application/problem+json", two.text
    assert two.json()["code"] == "too_many_files" and "at most 1 file" in two.json()["detail"]
    fields = client.post("/v1/images", files={"file": ("a.png", data, "image/png")}, data={f"x{i}": "1" for i in range(6)})
    assert fields.status_code == 413 and fields.json()["code"] == "too_many_fields" and "at most 4" in fields.json()["detail"]
    assert set(storage.glob("images/*")) == stored
