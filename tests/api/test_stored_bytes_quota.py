"""Collections and style models count against the tenant's stored-bytes quota like uploads (real keys, real Redis):
refused with 429 ``storage_quota_exceeded`` past the limit with nothing stored, each shared picture counted
once, and the bytes given back once when what kept them is deleted."""

import io
import zipfile

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from engine.result import Result
from engine.synthesis.fast_style import StyleModelConfig, build
from tests.api.test_keys_and_tenancy import assert_problem, make_key, upload
from tests.pictures import encode
from worker.jobs import JobStore
from worker.storage import make_storage
from worker.style_models import save_trained_style_model
from worker.uploads import content_id
from worker.usage import StorageQuotaExceeded, StoredBytes

TEAL, ORANGE, PURPLE = (encode(Image.new("RGB", (16, 16), colour)) for colour in ("teal", "orange", "purple"))
NAVY_BMP = encode(Image.new("RGB", (64, 64), "navy"), "BMP")  # 12 KB that deflate to a few hundred bytes


@pytest.fixture
def client(keyed_settings):
    with TestClient(create_app(keyed_settings)) as client:
        yield client


@pytest.fixture
def usage(keyed_settings):
    return StoredBytes(redis.Redis.from_url(keyed_settings.redis_url))


def zipped(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def files(*pictures: tuple[str, bytes]) -> list:
    return [("files", picture) for picture in pictures]


def assert_quota_refusal(answer, limit: int) -> None:
    body = assert_problem(answer, 429, "storage_quota_exceeded")
    assert body["limit"] == limit and int(answer.headers["Retry-After"]) >= 1


def test_a_key_at_its_limit_gets_no_new_collection_in_either_form_and_nothing_is_stored(client, usage):
    limit = len(TEAL) + len(ORANGE) - 1
    key = make_key(client, "submit", tenant="alice", max_stored_bytes=limit)
    upload(client, key, TEAL)
    refusals = [
        client.post("/v1/collections", files=files(("orange.png", ORANGE)), headers=key),
        client.post("/v1/collections", content=zipped("orange.png", ORANGE), headers={**key, "content-type": "application/zip"}),
        client.post("/v1/collections", files=files(("pictures.zip", zipped("orange.png", ORANGE))), headers=key),
    ]
    for answer in refusals:
        assert_quota_refusal(answer, limit)
    assert [c["id"] for c in client.get("/v1/collections", headers=key).json()["collections"] if not c["builtin"]] == []
    assert_problem(client.get(f"/v1/images/{content_id(ORANGE)}", headers=key), 404, "unknown_image")
    assert usage.used("alice") == len(TEAL)


def test_pictures_in_a_zip_count_inflated(client, usage):
    body = zipped("navy.bmp", NAVY_BMP)
    limit = len(NAVY_BMP) - 1
    assert len(body) < limit  # the zip fits; the picture it holds does not
    key = make_key(client, "submit", tenant="bob", max_stored_bytes=limit)
    assert_quota_refusal(client.post("/v1/collections", content=body, headers={**key, "content-type": "application/zip"}), limit)
    roomy = make_key(client, "submit", tenant="bob", max_stored_bytes=len(NAVY_BMP))
    assert client.post("/v1/collections", content=body, headers={**roomy, "content-type": "application/zip"}).status_code == 201
    assert usage.used("bob") == len(NAVY_BMP)


def test_adding_past_the_limit_is_refused_and_changes_nothing(client, usage):
    limit = len(TEAL) + len(ORANGE) - 1
    key = make_key(client, "submit", tenant="carol", max_stored_bytes=limit)
    made = client.post("/v1/collections", files=files(("teal.png", TEAL)), headers=key)
    assert made.status_code == 201, made.text
    base = f"/v1/collections/{made.json()['id']}"
    assert_quota_refusal(client.post(f"{base}/images", files=files(("orange.png", ORANGE)), headers=key), limit)
    assert_quota_refusal(client.post(f"{base}/images", content=zipped("o.png", ORANGE), headers={**key, "content-type": "application/zip"}), limit)
    assert [m["id"] for m in client.get(base, headers=key).json()["images"]] == [content_id(TEAL)]
    assert_problem(client.get(f"/v1/images/{content_id(ORANGE)}", headers=key), 404, "unknown_image")
    assert usage.used("carol") == len(TEAL)


def test_shared_pictures_count_once_and_go_with_the_last_thing_keeping_them(client, usage):
    key = make_key(client, "submit", tenant="dave", max_stored_bytes=len(TEAL) + len(ORANGE) + 1)
    upload(client, key, TEAL)  # kept by its own upload
    first = client.post("/v1/collections", files=files(("teal.png", TEAL), ("orange.png", ORANGE)), headers=key)
    assert first.status_code == 201, first.text  # TEAL is stored already: only ORANGE's bytes are new
    second = client.post("/v1/collections", files=files(("orange.png", ORANGE)), headers=key)
    assert second.status_code == 201, second.text  # nothing new at all
    assert usage.used("dave") == len(TEAL) + len(ORANGE)
    assert_quota_refusal(client.post("/v1/images", files={"file": ("p.png", PURPLE)}, headers=key), len(TEAL) + len(ORANGE) + 1)

    assert client.delete(f"/v1/collections/{first.json()['id']}", headers=key).status_code == 204
    assert usage.used("dave") == len(TEAL) + len(ORANGE)  # ORANGE is still in the second, TEAL is an upload
    for picture in (TEAL, ORANGE):
        assert client.get(f"/v1/images/{content_id(picture)}", headers=key).status_code == 200

    assert client.delete(f"/v1/collections/{second.json()['id']}", headers=key).status_code == 204
    assert_problem(client.get(f"/v1/images/{content_id(ORANGE)}", headers=key), 404, "unknown_image")
    assert client.get(f"/v1/images/{content_id(TEAL)}", headers=key).status_code == 200
    assert usage.used("dave") == len(TEAL)  # given back once
    assert client.post("/v1/images", files={"file": ("p.png", PURPLE)}, headers=key).status_code == 201  # it fits again


def test_style_models_count_and_deleting_one_gives_its_bytes_back(client, usage, keyed_settings):
    config = StyleModelConfig(width=4, blocks=1, styles=1, style_names=["only"])  # random weights: only their bytes count here
    trained = Result(data={"style_model": config.model_dump(), "model": "vgg19"}, tensors=build(config).state_dict())
    storage = make_storage(keyed_settings)
    save_trained_style_model(storage, usage, "erin", "ab" * 12, "train_style_model", trained, 10**9)
    size = usage.used("erin")
    assert size > 40_000  # the weights and the record
    limit = size + len(NAVY_BMP) - 1  # neither a second model nor the picture fits beside the first
    key = make_key(client, "submit", tenant="erin", max_stored_bytes=limit)
    with pytest.raises(StorageQuotaExceeded):
        save_trained_style_model(storage, usage, "erin", "cd" * 12, "train_style_model", trained, limit)
    assert [m["id"] for m in client.get("/v1/style_models", headers=key).json()["style_models"]] == ["ab" * 12]
    assert usage.used("erin") == size
    assert_quota_refusal(client.post("/v1/images", files={"file": ("big.bmp", NAVY_BMP)}, headers=key), limit)

    assert client.delete(f"/v1/style_models/{'ab' * 12}", headers=key).status_code == 204
    assert usage.used("erin") == 0
    assert client.post("/v1/images", files={"file": ("big.bmp", NAVY_BMP)}, headers=key).status_code == 201


def test_a_job_carries_its_keys_stored_bytes_limit_to_the_worker(client, keyed_settings):
    key = make_key(client, "submit", tenant="fay", max_stored_bytes=12345)
    style = upload(client, key, ORANGE)
    body = {"method": "train_style_model", "model": "vgg19", "inputs": {"content": {"collection": "samples"}, "style": [style]},
            "params": {"steps": 1, "size": 32, "base_channels": 4, "residual_blocks": 1}}
    submitted = client.post("/v1/jobs", json=body, headers=key)
    assert submitted.status_code == 202, submitted.text
    jobs = JobStore(redis.Redis.from_url(keyed_settings.redis_url), keyed_settings.job_ttl_seconds)
    assert jobs.get(submitted.json()["id"]).max_stored_bytes == 12345
