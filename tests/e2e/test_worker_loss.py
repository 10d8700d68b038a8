"""Jobs survive dying workers: late acks + requeue on a lost child, redelivery after
the visibility timeout when the whole worker dies, poison pills fail instead of looping."""

import os
import random
import signal
import time

import pytest

from tests.e2e.conftest import start_stack, stack_env
from worker.jobs import FINISHED

MAX_DELIVERIES = 3
KILLS = 5


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("worker-loss")
    # Jobs here last a few seconds (a fresh pool child first loads its model), so
    # the visibility timeout (longer than the longest job, as in production) can be
    # short and jobs abandoned by a dead worker come back within seconds.
    env = stack_env(
        redis_server.url, "filesystem", tmp, None,
        job_soft_time_limit=10, job_time_limit=12, visibility_timeout=14, redelivery_check_seconds=1,
        max_deliveries=MAX_DELIVERIES, progress_interval_seconds=0,
    )
    stack = start_stack(env, tmp / "worker.log")
    yield stack
    stack.client.close()
    stack.worker.stop()


def kill_child(job: dict) -> bool:
    """SIGKILL the pool process running ``job`` (its pid is in the record); False if it is gone already."""
    try:
        os.kill(int(job["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def step_at_least(step: int):
    return lambda job: job["state"] == "running" and (job["progress"] or {}).get("step", 0) >= step


def test_job_killed_with_its_pool_child_runs_again(stack, chelsea):
    image_id = stack.upload(chelsea.resize((48, 48)))
    job_id = stack.submit("probe_steps", image_id, steps=15, sleep=0.1).json()["id"]
    assert kill_child(stack.poll(job_id, step_at_least(3)))
    job = stack.wait(job_id, timeout=60)
    assert job["state"] == "succeeded" and job["deliveries"] == 2
    assert job["progress"]["step"] == 15


def test_job_killed_with_the_whole_worker_runs_on_the_next_worker(stack, chelsea):
    image_id = stack.upload(chelsea.resize((48, 48)))
    job_id = stack.submit("probe_steps", image_id, steps=16, sleep=0.1).json()["id"]
    stack.poll(job_id, step_at_least(3))
    stack.worker.kill()
    stack.worker.start()
    job = stack.wait(job_id, timeout=60)
    assert job["state"] == "succeeded" and job["deliveries"] == 2


def test_job_that_keeps_killing_workers_fails_as_a_poison_pill(stack, chelsea):
    image_id = stack.upload(chelsea.resize((48, 48)))
    response = stack.client.post("/v1/jobs", json={"method": "crash_worker", "model": "efficientnet_lite0", "inputs": {"image": image_id}})
    job = stack.wait(response.json()["id"], timeout=90)
    assert job["state"] == "failed" and job["error"]["code"] == "poison_pill"
    assert job["deliveries"] == MAX_DELIVERIES + 1
    # the worker is still serving
    after = stack.submit("probe_steps", image_id, steps=2).json()["id"]
    assert stack.wait(after)["state"] == "succeeded"


@pytest.mark.slow
def test_random_worker_kills_lose_no_job(stack, coffee):
    """14 jobs, the worker killed at random (the pool child or the whole worker), none lost or stuck."""
    rng = random.Random(231)
    image_id = stack.upload(coffee.resize((48, 48)))
    ids = [stack.submit("probe_steps", image_id, steps=4 + i % 8, sleep=0.06, size=32 + i).json()["id"] for i in range(14)]
    kills = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = [stack.client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
        if all(job["state"] in FINISHED for job in jobs):
            break
        victims = [job for job in jobs if step_at_least(1)(job) and job["deliveries"] < MAX_DELIVERIES - 1]
        if kills < KILLS and victims:
            if rng.random() < 0.5:
                # A job whose whole worker was killed still names its dead pool process until redelivered.
                kills += kill_child(victims[0])
            else:
                stack.worker.kill()
                stack.worker.start()
                kills += 1
        time.sleep(rng.uniform(0.3, 1.5))
    jobs = [stack.client.get(f"/v1/jobs/{job_id}").json() for job_id in ids]
    assert kills == KILLS
    assert [job["state"] for job in jobs] == ["succeeded"] * 14, [(j["id"], j["state"], j["error"]) for j in jobs]
    assert sum(job["deliveries"] for job in jobs) > 14  # kills did interrupt jobs (one may land just after a job ended)
    assert all(job["progress"]["step"] == job["progress"]["total"] for job in jobs)
