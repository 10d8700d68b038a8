"""A job on a registered model, run by a Celery worker process started after the registration,
which can only have found the model in the shared store and loaded its file from S3 (moto)."""

import pytest
import redis
from fastapi.testclient import TestClient

from tests.e2e.conftest import Stack, settings_from, stack_env
from tests.e2e.servers import CeleryWorker
from tests.model_files import IMAGENET_PRE, onnx_bytes, register

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered_then_worker(redis_server, s3_server, tmp_path_factory, efficientnet):
    from api.app import create_app

    tmp = tmp_path_factory.mktemp("registered-job")
    env = stack_env(redis_server.url, "s3", tmp, s3_server)
    redis.Redis.from_url(env["CONVLENS_REDIS_URL"]).flushdb()
    client = TestClient(create_app(settings_from(env)))
    meta = {"name": "lite0-registered", "preprocessing": IMAGENET_PRE, "input_size": [224, 224], "labels": "imagenet"}
    response = register(client, meta["name"], onnx_bytes(efficientnet.net, (224, 224)), meta)
    assert response.status_code == 201, response.text
    worker = CeleryWorker(env, tmp / "worker.log").start()  # a process that never saw the registration
    yield Stack(client, worker, settings_from(env), env)
    client.close()
    worker.stop()


def test_worker_started_later_runs_a_job_on_the_registered_model(registered_then_worker, chelsea):
    stack = registered_then_worker
    image_id = stack.upload(chelsea.resize((224, 224)))
    ours = stack.submit("classify", image_id, model="lite0-registered", top_k=5)
    theirs = stack.submit("classify", image_id, model="efficientnet_lite0", top_k=5)
    assert ours.status_code == 202 and theirs.status_code == 202, ours.text + theirs.text
    ours, theirs = stack.wait(ours.json()["id"], timeout=180), stack.wait(theirs.json()["id"], timeout=180)
    assert ours["state"] == "succeeded" and theirs["state"] == "succeeded", (ours, stack.worker.log()[-3000:])
    assert [e["label"] for e in ours["result"]["top"]] == [e["label"] for e in theirs["result"]["top"]]
    for mine, reference in zip(ours["result"]["top"], theirs["result"]["top"]):
        assert abs(mine["probability"] - reference["probability"]) < 1e-4
    assert "lite0-registered" in stack.worker.log()


def test_a_deleted_model_takes_no_more_jobs(registered_then_worker, chelsea):
    stack = registered_then_worker
    image_id = stack.upload(chelsea.resize((64, 64)))
    assert stack.client.delete("/v1/models/lite0-registered").status_code == 204
    response = stack.submit("saliency", image_id, model="lite0-registered")
    assert response.status_code == 404 and response.json()["code"] == "unknown_model"
