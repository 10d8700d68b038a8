"""Cancelling a job that never reports progress: asked first, killed by a repeated DELETE after the
grace period (its pool process terminated, the worker serving on), never ending 'succeeded'."""

import time
from datetime import datetime
from pathlib import Path

import pytest
import redis

from tests.e2e.conftest import start_stack, stack_env
from tests.e2e.servers import wait_for

GRACE = 1.5


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cancel-terminate")
    stack = start_stack(stack_env(redis_server.url, "filesystem", tmp, None, cancel_grace_seconds=GRACE), tmp / "worker.log")
    yield stack
    stack.client.close()
    stack.worker.stop()


def sleep_job(stack, image_id: str, seconds: float) -> str:
    body = {"method": "sleep_silently", "model": "efficientnet_lite0", "inputs": {"image": image_id}, "params": {"seconds": seconds}}
    response = stack.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def process_lives(pid: int) -> bool:
    """True while ``pid`` runs (a killed process not yet reaped by its parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def seconds(job: dict, start: str, end: str) -> float:
    return (datetime.fromisoformat(job[end]) - datetime.fromisoformat(job[start])).total_seconds()


def test_a_job_ignoring_cancel_is_killed_after_the_grace_period_and_the_worker_serves_on(stack, chelsea):
    image_id = stack.upload(chelsea.resize((32, 32)))
    job_id = sleep_job(stack, image_id, 90)
    running = stack.wait(job_id, until={"running"})
    pid = int(running["worker"].rsplit(":", 1)[1])

    asked = stack.client.delete(f"/v1/jobs/{job_id}")
    assert asked.status_code == 202 and asked.json()["cancel_requested"], asked.text
    assert 1 <= int(asked.headers["Retry-After"]) <= 2
    again = stack.client.delete(f"/v1/jobs/{job_id}")  # within the grace period: still only asking
    assert again.status_code == 202 and again.json()["state"] == "running"
    assert again.json()["cancel_requested_at"] == asked.json()["cancel_requested_at"]

    time.sleep(GRACE + 0.2)
    assert stack.client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"  # it never checks for cancellation
    killed = stack.client.delete(f"/v1/jobs/{job_id}")
    assert killed.status_code == 200 and killed.json()["state"] == "cancelled", killed.text
    wait_for(lambda: not process_lives(pid), 15, f"pool process {pid} to be killed")
    assert stack.worker.process.poll() is None  # the worker itself lives on

    after = stack.submit("probe_steps", image_id, steps=2).json()["id"]
    served = stack.wait(after, timeout=60)  # with -c 1, only a fresh pool process can run it this soon
    assert served["state"] == "succeeded" and served["worker"] != running["worker"]

    broker = redis.Redis.from_url(stack.settings.redis_url)
    wait_for(lambda: broker.llen("cpu") == 0 and broker.llen("gpu") == 0 and broker.hlen("unacked") == 0, 10, "the queues to drain")
    job = stack.client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["deliveries"] == 1  # killed once, never run again
    assert job["artifacts"] == [] and job["result"] is None
    assert seconds(job, "started_at", "finished_at") < 30


def test_a_cancelled_job_whose_method_returns_ends_cancelled_not_succeeded(stack, coffee):
    image_id = stack.upload(coffee.resize((32, 32)))
    job_id = sleep_job(stack, image_id, 3)
    stack.wait(job_id, until={"running"})
    asked = stack.client.delete(f"/v1/jobs/{job_id}")
    assert asked.status_code == 202
    job = stack.wait(job_id, timeout=60)
    assert job["state"] == "cancelled" and job["artifacts"] == [] and job["result"] is None
    assert seconds(job, "started_at", "finished_at") >= 2.5  # it ran to the end, unkilled
    storage = Path(stack.env["CONVLENS_STORAGE_DIR"])
    assert not list(storage.glob(f"jobs/{job_id}/*"))  # what it stored was discarded
