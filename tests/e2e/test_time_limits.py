"""Jobs past their time limits end failed with code time_limit instead of running on or staying 'running'."""

import pytest

from tests.e2e.conftest import start_stack, stack_env


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("time-limits")
    env = stack_env(redis_server.url, "filesystem", tmp, None, job_soft_time_limit=6, job_time_limit=9, visibility_timeout=12)
    stack = start_stack(env, tmp / "worker.log")
    yield stack
    stack.client.close()
    stack.worker.stop()


def test_soft_limit_stops_a_long_job(stack, chelsea):
    image_id = stack.upload(chelsea.resize((32, 32)))
    job = stack.wait(stack.submit("probe_steps", image_id, steps=200, sleep=0.1).json()["id"], timeout=60)
    assert job["state"] == "failed" and job["error"]["code"] == "time_limit"
    assert "6 s" in job["error"]["message"]


def test_hard_limit_fails_a_job_that_ignores_the_soft_one(stack, chelsea):
    image_id = stack.upload(chelsea.resize((32, 32)))
    response = stack.client.post("/v1/jobs", json={"method": "ignore_soft_limit", "model": "efficientnet_lite0", "inputs": {"image": image_id}})
    job = stack.wait(response.json()["id"], timeout=60)
    assert job["state"] == "failed" and job["error"]["code"] == "time_limit"
    assert "hard limit of 9 s" in job["error"]["message"]
    after = stack.submit("probe_steps", image_id, steps=2).json()["id"]  # a fresh pool child serves on
    assert stack.wait(after, timeout=60)["state"] == "succeeded"
