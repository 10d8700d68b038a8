"""Chaos: 24 jobs, two workers SIGKILLed at random (a pool child or a whole worker), Redis (append-only,
as in production) restarted once. Every job ends succeeded, or failed with a reason; none is lost
or stuck; the API never answers 500 meanwhile."""

import os
import random
import signal
import time

import pytest

from tests.e2e.conftest import settings_from, stack_env
from tests.e2e.servers import CeleryWorker, RedisServer
from worker.jobs import FINISHED

JOBS = 24


@pytest.fixture
def chaos(tmp_path):
    redis_server = RedisServer(tmp_path / "redis", persistent=True).start()
    env = stack_env(
        redis_server.url, "filesystem", tmp_path, None,
        job_soft_time_limit=30, job_time_limit=35, visibility_timeout=40, redelivery_check_seconds=1,
        heartbeat_seconds=0.5, max_deliveries=4, progress_interval_seconds=0,
    )
    workers = [CeleryWorker(env, tmp_path / f"worker{i}.log").start() for i in range(2)]
    from fastapi.testclient import TestClient

    from api.app import create_app

    client = TestClient(create_app(settings_from(env)))
    yield client, workers, redis_server
    client.close()
    for worker in workers:
        worker.stop()
    redis_server.stop()


def _kill_child(job: dict) -> bool:
    try:
        os.kill(int(job["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    except (ProcessLookupError, ValueError, AttributeError):
        return False
    return True


@pytest.mark.slow
def test_jobs_survive_killed_workers_and_a_redis_restart(chaos, coffee):
    client, workers, redis_server = chaos
    rng = random.Random(9)
    statuses: list[int] = []

    def call(method, url, **kwargs):
        response = client.request(method, url, **kwargs)
        statuses.append(response.status_code)
        return response

    import io

    buffer = io.BytesIO()
    coffee.resize((48, 48)).save(buffer, "PNG")
    image_id = call("POST", "/v1/images", files={"file": ("c.png", buffer.getvalue(), "image/png")}).json()["id"]
    ids = []
    for i in range(JOBS):
        body = {"method": "probe_steps", "model": "efficientnet_lite0", "inputs": {"image": image_id},
                "params": {"steps": 4 + i % 5, "sleep": 0.25, "size": 32 + i}}
        response = call("POST", "/v1/jobs", json=body)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])

    kills, restarted = 0, False
    jobs: dict[str, dict] = {}
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        for job_id in ids:
            response = call("GET", f"/v1/jobs/{job_id}")
            if response.status_code == 200:
                jobs[job_id] = response.json()
        finished = sum(job["state"] in FINISHED for job in jobs.values())
        if len(jobs) == JOBS and finished == JOBS:
            break
        if not restarted and finished >= JOBS // 3:
            redis_server.restart(down_seconds=1.0)
            restarted = True
        running = [job for job in jobs.values() if job["state"] == "running" and job.get("worker")]
        if kills < 8 and running and rng.random() < 0.8:
            if rng.random() < 0.5:
                kills += _kill_child(rng.choice(running))
            else:
                worker = rng.choice(workers)
                worker.kill()
                worker.start()
                kills += 1
        time.sleep(rng.uniform(0.3, 1.0))

    assert restarted and kills >= 4
    assert 500 not in statuses
    assert set(jobs) == set(ids), "a job was lost"
    unfinished = {job_id: job for job_id, job in jobs.items() if job["state"] not in {"succeeded", "failed"}}
    logs = "\n".join(worker.log()[-2000:] for worker in workers)
    assert not unfinished, f"{unfinished}\n{logs}"
    for job in jobs.values():
        if job["state"] == "failed":
            assert job["error"]["code"] == "poison_pill" and job["error"]["message"]
    assert sum(job["state"] == "succeeded" for job in jobs.values()) >= JOBS // 2
