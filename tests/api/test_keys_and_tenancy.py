"""API keys and tenants against a real Redis: 401 without a key, 403 below the scope, 404 for another tenant's things."""

import base64
import hashlib
import subprocess
import sys

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.settings import Settings
from engine.result import Result
from engine.synthesis.fast_style import StyleModelConfig, build
from tests.api.conftest import ADMIN_KEY
from tests.e2e.servers import ROOT
from tests.pictures import encode
from worker.artifacts import store_result
from worker.jobs import JobStore, connect
from worker.storage import make_storage
from worker.style_models import StyleModelStore

TEAL = encode(Image.new("RGB", (16, 16), "teal"))
ORANGE = encode(Image.new("RGB", (16, 16), "orange"))
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def client(keyed_settings):
    with TestClient(create_app(keyed_settings)) as client:
        yield client


def make_key(client, scope: str, **fields) -> dict[str, str]:
    made = client.post("/v1/keys", json={"scope": scope, **fields}, headers=ADMIN)
    assert made.status_code == 201, made.text
    return {"X-API-Key": made.json()["key"]}


def upload(client, headers, data=TEAL) -> str:
    answer = client.post("/v1/images", files={"file": ("a.png", data, "image/png")}, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["id"]


def submit(client, headers, image_id: str):
    job = {"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image_id}, "params": {"top_k": 3}}
    return client.post("/v1/jobs", json=job, headers=headers)


def assert_problem(answer, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body = answer.json()
    assert body["code"] == code and body["status"] == status
    return body


def test_a_missing_or_wrong_key_is_401_with_a_challenge(client):
    for path in ("/v1/jobs", "/v1/models", f"/v1/images/{'0' * 32}"):
        missing = assert_problem(client.get(path), 401, "missing_api_key")
        assert "Authorization: Bearer" in missing["detail"]
    assert client.get("/v1/jobs").headers["WWW-Authenticate"] == 'Bearer realm="convlens"'
    wrong = client.get("/v1/jobs", headers={"Authorization": "Bearer cl_not-a-key"})
    assert_problem(wrong, 401, "invalid_api_key")
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert_problem(client.post("/v1/classify", files={"image": ("a", TEAL)}), 401, "missing_api_key")
    assert client.get("/healthz").status_code == 200  # probes need no key


def test_keys_are_made_listed_without_tokens_and_revoked(client, redis_server):
    made = client.post("/v1/keys", json={"scope": "read", "name": "dashboard"}, headers=ADMIN).json()
    token = made["key"]
    assert token.startswith("cl_") and len(token) > 40 and made["scope"] == "read"
    listed = client.get("/v1/keys", headers=ADMIN).json()["keys"]
    assert [(k["id"], k["name"]) for k in listed] == [(made["id"], "dashboard")] and "key" not in listed[0]
    store = redis.Redis.from_url(redis_server.url)
    stored = b" ".join(value for name in store.scan_iter("convlens:apikey*") for value in store.hgetall(name).values())
    assert hashlib.sha256(token.encode()).hexdigest().encode() in stored
    assert token.encode() not in stored  # only its hash is kept
    assert client.get("/v1/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.delete(f"/v1/keys/{made['id']}", headers=ADMIN).status_code == 204
    assert_problem(client.get("/v1/jobs", headers={"X-API-Key": token}), 401, "invalid_api_key")
    assert_problem(client.delete(f"/v1/keys/{made['id']}", headers=ADMIN), 404, "unknown_key")


def test_scopes_read_cannot_submit_submit_cannot_manage_keys(client):
    reader = make_key(client, "read")
    writer = make_key(client, "submit")
    image_id = upload(client, writer)
    assert_problem(submit(client, reader, image_id), 403, "insufficient_scope")
    assert_problem(client.post("/v1/images", files={"file": ("a.png", TEAL)}, headers=reader), 403, "insufficient_scope")
    assert_problem(client.post("/v1/classify", files={"image": ("a", TEAL)}, headers=reader), 403, "insufficient_scope")
    assert_problem(client.post("/v1/keys", json={"scope": "admin"}, headers=writer), 403, "insufficient_scope")
    assert_problem(client.get("/v1/keys", headers=reader), 403, "insufficient_scope")
    assert client.get("/v1/models", headers=reader).status_code == 200


def test_another_tenant_finds_nothing_of_the_first(client, keyed_settings):
    alice = make_key(client, "submit", tenant="alice")
    alice_reader = make_key(client, "read", tenant="alice")
    bob = make_key(client, "submit")  # a tenant of its own
    image_id = upload(client, alice)
    job = submit(client, alice, image_id).json()
    jobs = JobStore(connect(keyed_settings), keyed_settings.job_ttl_seconds)
    storage = make_storage(keyed_settings)
    record = jobs.get(job["id"])
    jobs.start(record.id, 3, "test:1")  # finish it as the worker does
    picture = Image.new("RGB", (8, 8), "red")
    artifacts = store_result(storage, record.id, Result(images={"map": picture}, data={"ok": 1}, main="map"))
    assert jobs.finish(record, "succeeded", artifacts=artifacts, result={"ok": 1}) == "succeeded"
    base = f"/v1/jobs/{job['id']}"

    assert client.get(base, headers=alice_reader).json()["state"] == "succeeded"  # same tenant, read key
    assert client.get(f"{base}/artifacts/map.png", headers=alice).content.startswith(b"\x89PNG")
    assert client.get(f"/v1/images/{image_id}", headers=alice).content == TEAL

    assert_problem(client.get(base, headers=bob), 404, "unknown_job")
    assert client.get("/v1/jobs", headers=bob).json()["jobs"] == []
    assert_problem(client.delete(base, headers=bob), 404, "unknown_job")
    assert_problem(client.get(f"{base}/events", headers=bob), 404, "unknown_job")
    assert_problem(client.get(f"{base}/preview", headers=bob), 404, "unknown_job")
    assert_problem(client.get(f"{base}/artifacts/map.png", headers=bob), 404, "unknown_job")
    assert_problem(client.get(f"/v1/images/{image_id}", headers=bob), 404, "unknown_image")
    assert_problem(submit(client, bob, image_id), 404, "unknown_image")
    inline = client.post("/v1/classify", json={"inputs": {"image": {"image_id": image_id}}}, headers=bob)
    assert_problem(inline, 404, "unknown_image")

    assert upload(client, bob) == image_id  # bob's own copy of the same bytes
    twin = submit(client, bob, image_id)
    assert twin.status_code == 202 and twin.json()["id"] != job["id"]  # identical jobs of two tenants: two records
    assert [j["id"] for j in client.get("/v1/jobs", headers=alice).json()["jobs"]] == [job["id"]]
    assert client.get(base, headers=alice).json()["state"] == "succeeded"  # nothing of alice's changed


def test_rate_limit_is_429_with_retry_after(client):
    limited = make_key(client, "read", rate_per_minute=3)
    assert [client.get("/v1/jobs", headers=limited).status_code for _ in range(3)] == [200] * 3
    refused = client.get("/v1/jobs", headers=limited)
    assert_problem(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert client.get("/v1/jobs", headers=make_key(client, "read", rate_per_minute=3)).status_code == 200  # per key


def test_concurrent_job_quota_is_429(client):
    key = make_key(client, "submit", max_active_jobs=1)
    first, second = upload(client, key), upload(client, key, ORANGE)
    assert submit(client, key, first).status_code == 202
    assert submit(client, key, first).status_code == 202  # its twin is the same job
    refused = submit(client, key, second)
    assert_problem(refused, 429, "job_quota_exceeded")
    assert int(refused.headers["Retry-After"]) >= 1


def test_stored_bytes_quota_is_429_and_reuploads_cost_nothing(client):
    key = make_key(client, "submit", max_stored_bytes=len(TEAL) + len(ORANGE) - 1)
    upload(client, key)
    assert client.post("/v1/images", files={"file": ("a.png", TEAL)}, headers=key).status_code == 200  # stored already
    refused = client.post("/v1/images", files={"file": ("b.png", ORANGE)}, headers=key)
    assert_problem(refused, 429, "storage_quota_exceeded")
    assert "Retry-After" in refused.headers
    other = make_key(client, "submit", max_stored_bytes=len(ORANGE))
    assert client.post("/v1/images", files={"file": ("b.png", ORANGE)}, headers=other).status_code == 201


@pytest.mark.parametrize("settings, host, refused", [
    ({"open_access": True}, "127.0.0.1", None),
    ({"open_access": True}, "::1", None),
    ({"open_access": True}, "0.0.0.0", "refusing to serve open access"),
    ({"open_access": True}, "192.0.2.7", "refusing to serve open access"),
    ({}, "0.0.0.0", "no API keys configured"),
    ({}, "127.0.0.1", "no API keys configured"),
    ({"admin_key": "s3cret-admin"}, "0.0.0.0", None),
])
def test_open_access_only_on_loopback_and_keys_needed_elsewhere(settings, host, refused):
    reason = Settings(**settings).refuses_to_bind(host)
    assert reason is None if refused is None else refused in reason


def test_serve_refuses_a_public_interface_without_keys_and_says_why():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, "-m", "api.serve", "--host", "0.0.0.0"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2
    assert "no API keys configured: set CONVLENS_ADMIN_KEY" in ran.stderr


def test_another_tenant_finds_no_collection_or_style_model_of_the_first(client, keyed_settings, chelsea):
    alice, bob = make_key(client, "submit", tenant="alice"), make_key(client, "submit")
    made = client.post("/v1/collections", files=[("files", ("teal.png", TEAL)), ("files", ("orange.png", ORANGE))],
                       data={"name": "alice's"}, headers=alice)
    assert made.status_code == 201, made.text
    collection = made.json()
    base = f"/v1/collections/{collection['id']}"
    member = collection["images"][0]["id"]
    config = StyleModelConfig(width=4, blocks=1, styles=1, style_names=["only"])  # random weights: a tenancy test
    StyleModelStore(make_storage(keyed_settings)).save("alice", "cd" * 12, config, build(config).state_dict(), {"job": None})
    style = "/v1/style_models/" + "cd" * 12
    stylize = {"style_model": "cd" * 12, "image": {"base64": base64.b64encode(encode(chelsea.resize((32, 32)))).decode()}}

    assert client.get(base, headers=alice).json()["count"] == 2
    assert client.get(style, headers=alice).status_code == 200
    assert client.post("/v1/stylize", json=stylize, headers=alice).content.startswith(b"\x89PNG")

    assert_problem(client.get(base, headers=bob), 404, "unknown_collection")
    assert_problem(client.get(f"{base}/images/{member}/thumbnail", headers=bob), 404, "unknown_collection")
    assert_problem(client.post(f"{base}/images", files=[("files", ("x.png", TEAL))], headers=bob), 404, "unknown_collection")
    assert_problem(client.delete(base, headers=bob), 404, "unknown_collection")
    assert collection["id"] not in [c["id"] for c in client.get("/v1/collections", headers=bob).json()["collections"]]
    job = {"method": "embed_collection", "model": "efficientnet_lite0", "inputs": {"images": {"collection": collection["id"]}}, "params": {}}
    assert_problem(client.post("/v1/jobs", json=job, headers=bob), 404, "unknown_collection")
    assert_problem(client.get(style, headers=bob), 404, "unknown_style_model")
    assert_problem(client.delete(style, headers=bob), 404, "unknown_style_model")
    assert_problem(client.post("/v1/stylize", json=stylize, headers=bob), 404, "unknown_style_model")
    assert client.get("/v1/style_models", headers=bob).json()["style_models"] == []

    assert client.get(base, headers=alice).json()["count"] == 2  # nothing of alice's changed
    assert client.get(style, headers=alice).status_code == 200
