"""A model registered under older metadata rules stays listed, described and removable (real Redis, filesystem storage).

Registration's bounds on preprocessing (finite, mean within ±1e6, std from 1e-6 to 1e6) came after models were
stored with only ``std > 0``; a stored record was validated when it was registered, so reading it must not
apply rules added since (it made the tenant's whole listing and the model's deletion answer 500).
"""

import json

from tests.model_files import metadata, onnx_bytes, register, registry_client, tiny_net  # noqa: F401
from worker.model_store import tenant_models

SIZE = (64, 64)
OLDER_RULES = {"mean": [1e7, 0.5, -2e6], "std": [1e-9, 2e6, 0.25], "channel_order": "RGB", "pixel_range": "0-1"}


def test_a_record_stored_under_older_rules_is_listed_described_and_deleted(registry_client):
    client = registry_client
    assert register(client, "older", onnx_bytes(tiny_net(), SIZE), metadata("older", SIZE, ["a", "b", "c", "d"])).status_code == 201
    store = client.app.state.model_store()
    stored = json.loads(store.redis.hget(tenant_models("public"), "older"))
    stored["metadata"]["preprocessing"] = OLDER_RULES  # as the store wrote it before the bounds
    store.redis.hset(tenant_models("public"), "older", json.dumps(stored, separators=(",", ":")))

    listed = client.get("/v1/models")
    assert listed.status_code == 200, listed.text
    older = {model["name"]: model for model in listed.json()["models"]}["older"]
    assert older["preprocessing"]["mean"] == OLDER_RULES["mean"] and older["preprocessing"]["std"] == OLDER_RULES["std"]

    described = client.get("/v1/models/older")
    assert described.status_code == 200, described.text
    assert described.json()["preprocessing"]["std"] == OLDER_RULES["std"]

    assert client.delete("/v1/models/older").status_code == 204
    assert client.get("/v1/models/older").status_code == 404
    assert "older" not in {model["name"] for model in client.get("/v1/models").json()["models"]}
