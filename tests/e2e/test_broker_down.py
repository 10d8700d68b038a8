"""Redis down: the API answers 503 broker_unavailable fast (problem+json, Retry-After), then recovers."""

import time

import pytest

from tests.e2e.conftest import start_stack, stack_env
from tests.e2e.servers import RedisServer


@pytest.fixture
def own_stack(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    stack = start_stack(stack_env(server.url, "filesystem", tmp_path, None), tmp_path / "worker.log")
    yield stack, server
    stack.client.close()
    stack.worker.stop()
    server.stop()


def timed(call):
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def test_broker_down_answers_503_fast_and_recovers(own_stack, chelsea):
    stack, server = own_stack
    image_id = stack.upload(chelsea.resize((48, 48)))
    job_id = stack.submit("classify", image_id, top_k=1).json()["id"]
    assert stack.wait(job_id)["state"] == "succeeded"

    server.stop()
    for call in (
        lambda: stack.submit("classify", image_id, top_k=2),
        lambda: stack.client.get(f"/v1/jobs/{job_id}"),
        lambda: stack.client.get("/v1/jobs"),
        lambda: stack.client.delete(f"/v1/jobs/{job_id}"),
    ):
        response, seconds = timed(call)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "broker_unavailable"
        assert int(response.headers["Retry-After"]) >= 1
        assert seconds < 2.0
    ready, seconds = timed(lambda: stack.client.get("/readyz"))
    assert ready.status_code == 503 and ready.json()["checks"]["storage"] == "ok" and seconds < 2.0
    assert stack.client.get("/healthz").status_code == 200

    server.start()  # same port, empty: records are gone, uploaded images (storage) are not
    assert stack.client.get("/readyz").status_code == 200
    response = stack.submit("classify", image_id, top_k=2)
    assert response.status_code == 202, response.text
    assert stack.wait(response.json()["id"], timeout=90)["state"] == "succeeded"
