"""Registered models belong to their tenant: two tenants with real keys on one service (real Redis).

Tenant bob names alice's model in every inline method, in jobs of both
queues, an evaluation, the catalogue and deletion, and finds nothing (404,
as for a name nobody registered); the operator publishes a model to every
tenant only explicitly; a tenant's key-admin rights stop at its own tenant.
The models are tiny random-weight ONNX files (format tests).
"""

import base64
import json
from types import SimpleNamespace

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from engine.registry import all_methods
from tests.api.conftest import ADMIN_KEY, make_settings
from tests.e2e.servers import RedisServer
from tests.model_files import TinyNet, metadata, onnx_bytes, tiny_net
from tests.pictures import encode
from worker import tasks
from worker.jobs import Job, JobStore, connect, new_job_id
from worker.storage import FilesystemStorage

OPERATOR = {"Authorization": f"Bearer {ADMIN_KEY}"}
PICTURE = {"base64": base64.b64encode(encode(Image.new("RGB", (48, 40), "teal"))).decode()}
SIZE = (64, 64)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tenancy")
    server = RedisServer(tmp / "redis").start()
    settings = make_settings(open_access=False, admin_key=ADMIN_KEY, redis_url=server.url, storage_dir=str(tmp / "storage"))
    try:
        with TestClient(create_app(settings)) as client:
            yield SimpleNamespace(client=client, settings=settings)
    finally:
        server.stop()


def create_app(settings):
    from api.app import create_app as make

    return make(settings)


def key(client, scope: str, tenant: str, headers=OPERATOR, **fields) -> dict:
    made = client.post("/v1/keys", json={"scope": scope, "tenant": tenant, **fields}, headers=headers)
    assert made.status_code == 201, made.text
    return {"X-API-Key": made.json()["key"], "id": made.json()["id"]}


def headers(made: dict) -> dict:
    return {"X-API-Key": made["X-API-Key"]}


@pytest.fixture(scope="module")
def tenants(service):
    client = service.client
    alice, bob = key(client, "admin", "alice"), key(client, "admin", "bob")
    answer = register_as(client, alice, "a-net", classes=4)
    assert answer.status_code == 201, answer.text
    return SimpleNamespace(alice=alice, bob=bob)


def register_as(client, made: dict, name: str, classes: int):
    labels = [f"{name} class {i}" for i in range(classes)]
    return client.post("/v1/models", files={"file": (name, onnx_bytes(tiny_net(classes), SIZE))},
                       data={"metadata": json.dumps(metadata(name, SIZE, labels))}, headers=headers(made))


def inline_body(method, model: str) -> dict:
    inputs = {slot.name: [PICTURE] * max(slot.min_count, 2) if slot.many else PICTURE for slot in method.inputs if not slot.optional}
    return {"model": model, "params": {}, "inputs": inputs}


def assert_unknown_model(answer, name: str = "a-net"):
    assert answer.status_code == 404, answer.text
    body = answer.json()
    assert body["code"] == "unknown_model" and name in body["detail"]
    assert "alice" not in answer.text  # nothing says whose it is


def test_the_owner_uses_its_model(service, tenants):
    answer = service.client.post("/v1/classify", json=inline_body(next(m for m in all_methods() if m.name == "classify"), "a-net"),
                                 headers=headers(tenants.alice))
    assert answer.status_code == 200, answer.text
    assert [entry["label"] for entry in answer.json()["data"]["top"]][:1][0].startswith("a-net class")


@pytest.mark.parametrize("method", [m for m in all_methods() if m.inline], ids=lambda m: m.name)
def test_another_tenant_gets_404_from_every_inline_method(service, tenants, method):
    assert_unknown_model(service.client.post(f"/v1/{method.name}", json=inline_body(method, "a-net"), headers=headers(tenants.bob)))


def test_another_tenant_gets_404_from_jobs_of_each_queue_evaluation_and_the_catalogue(service, tenants):
    client, bob = service.client, headers(tenants.bob)
    image = client.post("/v1/images", files={"file": ("a.png", base64.b64decode(PICTURE["base64"]))}, headers=bob).json()["id"]
    jobs = [
        {"method": "classify", "inputs": {"image": image}},  # the cpu queue
        {"method": "class_visualization", "inputs": {}, "params": {"steps": 1, "size": 64}},  # the gpu queue
        {"method": "evaluate_attribution", "inputs": {"images": [image]}, "params": {"methods": ["saliency"]}},
    ]
    for job in jobs:
        assert_unknown_model(client.post("/v1/jobs", json={"model": "a-net", "params": {}, **job}, headers=bob))
    assert_unknown_model(client.get("/v1/models/a-net", headers=bob))
    assert_unknown_model(client.get("/v1/models/a-net?height=32&width=32", headers=bob))
    assert "a-net" not in {m["name"] for m in client.get("/v1/models", headers=bob).json()["models"]}
    assert client.delete("/v1/models/a-net", headers=bob).status_code == 404
    assert client.get("/v1/models/a-net", headers=headers(tenants.alice)).status_code == 200  # still there for alice


def test_a_job_forged_for_another_tenant_fails_in_the_worker(service, tenants, tmp_path):
    """The worker prepares the job as its tenant sees the model: a record naming alice's model for bob fails unknown_model."""
    store = JobStore(connect(service.settings), 3600)
    job, _ = store.create(Job(id=new_job_id(), method="filters", model="a-net", queue="cpu", params={}, inputs={},
                              content_hash="forged", tenant="bob"))
    store.start(job.id, 3, "test:1")
    task = SimpleNamespace(jobs=store, settings=service.settings, storage=FilesystemStorage(tmp_path), app=None,
                           models=service.client.app.state.model_store())
    assert tasks._run(task, store.get(job.id), 1) == "failed"
    assert store.get(job.id).error["code"] == "unknown_model"


def test_names_are_per_tenant(service, tenants):
    client = service.client
    assert register_as(client, tenants.bob, "a-net", classes=3).status_code == 201  # bob's own a-net: another file
    body = inline_body(next(m for m in all_methods() if m.name == "classify"), "a-net")
    bobs = client.post("/v1/classify", json={**body, "params": {"top_k": 10}}, headers=headers(tenants.bob)).json()["data"]["top"]
    alices = client.post("/v1/classify", json={**body, "params": {"top_k": 10}}, headers=headers(tenants.alice)).json()["data"]["top"]
    assert len(bobs) == 3 and len(alices) == 4
    assert register_as(client, tenants.alice, "a-net", classes=4).status_code == 409  # unique within a tenant
    assert client.delete("/v1/models/a-net", headers=headers(tenants.bob)).status_code == 204
    assert client.get("/v1/models/a-net", headers=headers(tenants.alice)).status_code == 200  # bob deleted only his


def test_the_operator_publishes_explicitly(service, tenants):
    client = service.client
    assert register_as(client, {"X-API-Key": ADMIN_KEY}, "house-net", classes=5).status_code == 201
    body = inline_body(next(m for m in all_methods() if m.name == "saliency"), "house-net")
    for tenant in (tenants.alice, tenants.bob):  # registered by the operator is not published
        assert_unknown_model(client.post("/v1/saliency", json=body, headers=headers(tenant)), "house-net")
    assert client.post("/v1/models/a-net/publish", headers=headers(tenants.alice)).json()["code"] == "operator_only"
    assert client.post("/v1/models/house-net/publish", headers=OPERATOR).status_code == 204
    for tenant in (tenants.alice, tenants.bob):
        assert client.post("/v1/saliency", json=body, headers=headers(tenant)).status_code == 200
        listed = {m["name"]: m for m in client.get("/v1/models", headers=headers(tenant)).json()["models"]}
        assert listed["house-net"]["published"] is True and "owner" not in listed["house-net"]
        assert client.delete("/v1/models/house-net", headers=headers(tenant)).status_code == 404  # theirs to use, not to delete
    assert client.delete("/v1/models/house-net/publish", headers=OPERATOR).status_code == 204
    assert_unknown_model(client.post("/v1/saliency", json=body, headers=headers(tenants.bob)), "house-net")


def test_a_tenants_key_admin_rights_stop_at_its_tenant(service, tenants):
    client, bob = service.client, headers(tenants.bob)
    alice_reader = key(client, "read", "alice", headers(tenants.alice))
    refused = client.post("/v1/keys", json={"scope": "admin", "tenant": "alice"}, headers=bob)
    assert refused.status_code == 403 and refused.json()["code"] == "foreign_tenant"
    own = client.post("/v1/keys", json={"scope": "submit"}, headers=bob).json()
    assert own["tenant"] == "bob"  # no tenant given: the maker's own
    listed = {k["id"]: k["tenant"] for k in client.get("/v1/keys", headers=bob).json()["keys"]}
    assert set(listed.values()) == {"bob"} and alice_reader["id"] not in listed
    assert client.delete(f"/v1/keys/{alice_reader['id']}", headers=bob).status_code == 404
    assert client.get("/v1/jobs", headers=headers(alice_reader)).status_code == 200  # alice's key still works
    loose = client.post("/v1/keys", json={"scope": "submit", "rate_per_minute": 0}, headers=bob)
    assert loose.status_code == 403 and loose.json()["code"] == "limit_above_own"
    for reserved in ("builtin", "admin", "public"):
        answer = client.post("/v1/keys", json={"scope": "read", "tenant": reserved}, headers=OPERATOR)
        assert answer.status_code == 422 and "service's own" in answer.text


def test_models_scope_registers_without_managing_keys(service, tenants):
    client = service.client
    modeller, submitter = key(client, "models", "carol"), key(client, "submit", "carol")
    assert register_as(client, modeller, "c-net", classes=2).status_code == 201
    assert client.post("/v1/keys", json={"scope": "read"}, headers=headers(modeller)).status_code == 403
    refused = register_as(client, submitter, "c-net-2", classes=2)
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"


def test_one_tenants_cached_features_never_answer_for_anothers_model_of_the_same_name(service):
    """The dataset methods cache a collection's feature vectors in storage, shared by every tenant (the key is a
    content hash). Two tenants' models of one name and architecture, different weights, on the shared sample
    collection: the second must compute its own vectors, not be served the first's (made by a model it cannot see)."""
    client = service.client
    erin, frank = key(client, "models", "erin"), key(client, "models", "frank")
    for seed, made in ((1, erin), (2, frank)):
        torch.manual_seed(seed)
        meta = metadata("twin-net", SIZE, ["a", "b", "c", "d"])
        answer = client.post("/v1/models", files={"file": ("twin-net", onnx_bytes(TinyNet(4).eval(), SIZE))},
                             data={"metadata": json.dumps(meta)}, headers=headers(made))
        assert answer.status_code == 201, answer.text
    body = {"model": "twin-net", "params": {"projection": "pca"}, "inputs": {"images": {"collection": "samples"}}}
    erins, franks = (client.post("/v1/embedding?embed=all", json=body, headers=headers(made)) for made in (erin, frank))
    assert erins.status_code == franks.status_code == 200, (erins.text, franks.text)
    assert erins.json()["data"]["features"]["cached"] is False
    assert franks.json()["data"]["features"]["cached"] is False  # frank's network ran on the pictures
    assert franks.json()["data"]["features"]["key"] != erins.json()["data"]["features"]["key"]


def test_a_model_registered_again_with_other_default_layers_never_reuses_the_old_ones_jobs(service):
    """A job's twin (same method, model, params and pictures) answers with the earlier job. A name registered
    again for the same file with another default layer computes with that layer, so it is not the twin."""
    client = service.client
    gina = headers(key(client, "models", "gina"))
    data = onnx_bytes(tiny_net(), SIZE)

    def register(layer: str | None) -> list[str]:
        meta = metadata("layered-net", SIZE, ["a", "b", "c", "d"], **({"gradcam_layer": layer} if layer else {}))
        answer = client.post("/v1/models", files={"file": ("layered-net", data)}, data={"metadata": json.dumps(meta)}, headers=gina)
        assert answer.status_code == 201, answer.text
        return [layer["name"] for layer in client.get("/v1/models/layered-net", headers=gina).json()["layers"] if len(layer["shape"]) == 3 and layer["type"] == "Conv2d"]

    first, *_, last = register(None)
    assert client.delete("/v1/models/layered-net", headers=gina).status_code == 204
    register(first)
    image = client.post("/v1/images", files={"file": ("a.png", base64.b64decode(PICTURE["base64"]))}, headers=gina).json()["id"]
    job = {"method": "gradcam", "model": "layered-net", "params": {}, "inputs": {"image": image}}
    before = client.post("/v1/jobs", json=job, headers=gina).json()["id"]
    assert client.post("/v1/jobs", json=job, headers=gina).json()["id"] == before  # its twin, as long as nothing changed
    assert client.delete("/v1/models/layered-net", headers=gina).status_code == 204
    register(last)
    assert client.post("/v1/jobs", json=job, headers=gina).json()["id"] != before
