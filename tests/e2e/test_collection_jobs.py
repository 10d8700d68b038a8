"""A collection's embedding computed once as a job (real worker, real Redis), then reused inline."""

import io

import numpy as np
import pytest

from tests.e2e.conftest import start_stack, stack_env
from tests.e2e.test_every_method_as_job import follow


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("collections")
    stack = start_stack(stack_env(redis_server.url, "filesystem", tmp, None), tmp / "worker.log")
    with stack.client:
        yield stack
    stack.worker.stop()


def test_embedding_job_over_a_collection_is_reused_by_inline_queries(stack):
    samples = stack.client.get("/v1/collections/samples").json()
    params = {"size": 64, "batch_size": 4}
    submitted = stack.client.post("/v1/jobs", json={"method": "embed_collection", "model": "efficientnet_lite0",
                                                    "inputs": {"images": {"collection": "samples"}}, "params": params})  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    assert submitted.json()["inputs"]["images"] == [image["id"] for image in samples["images"]]
    job, running = follow(stack, submitted.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    assert job["progress"]["total"] == 4 and all(p["total"] == 4 for p in running)  # 16 photos in batches of 4
    assert job["result"]["features"]["cached"] is False
    features = np.load(io.BytesIO(stack.client.get(f"/v1/jobs/{job['id']}/artifacts/features.npy").content))
    assert features.shape == (len(samples["images"]), 1280)
    named = [(image["id"], image["name"]) for image in samples["images"]]
    assert [(p["id"], p["name"]) for p in job["result"]["pictures"]] == named  # the worker names the collection's pictures

    query = {"model": "efficientnet_lite0", "params": {"size": 64, "top_k": 2}, "inputs": {"images": {"collection": "samples"}}}
    answer = stack.client.post("/v1/nearest_neighbors", json=query)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["features"] == {**job["result"]["features"], "cached": True}
    for row in answer.json()["data"]["neighbors"]:
        assert named[row["query"]["position"]] == (row["query"]["id"], row["query"]["name"])
        assert all(named[n["position"]] == (n["id"], n["name"]) for n in row["neighbors"])


def test_unknown_collection_in_a_job_is_404(stack):
    body = {"method": "embed_collection", "model": "efficientnet_lite0", "inputs": {"images": {"collection": "f" * 24}}}
    answer = stack.client.post("/v1/jobs", json=body)
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_collection"
