"""Jobs end in a final state whatever fails around them: Redis down when a job finishes, a send
that fails, a worker stopped with SIGTERM. Real Redis (append-only, as in production), a real
Celery worker process."""

import time

import pytest
import redis
from kombu.exceptions import OperationalError

import api.job_service as service_module
from tests.e2e.conftest import start_stack, stack_env
from tests.e2e.servers import RedisServer



@pytest.fixture(scope="module")
def persistent_redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis-aof"), persistent=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(persistent_redis, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("never-stuck")
    env = stack_env(
        persistent_redis.url, "filesystem", tmp, None,
        job_soft_time_limit=30, job_time_limit=35, visibility_timeout=40, redelivery_check_seconds=1,
        heartbeat_seconds=0.5, unsent_job_seconds=2, progress_interval_seconds=0,
    )
    stack = start_stack(env, tmp / "worker.log")
    yield stack
    stack.client.close()
    stack.worker.stop()


def _step(job: dict) -> int:
    return (job.get("progress") or {}).get("step", 0)


def test_redis_down_when_a_job_finishes_still_ends_the_job_succeeded(stack, persistent_redis, chelsea):
    image_id = stack.upload(chelsea.resize((48, 48)))
    # each step reports progress, then sleeps: after the last report the job only finishes
    job_id = stack.submit("probe_steps", image_id, steps=4, sleep=1.5, size=32).json()["id"]
    stack.poll(job_id, lambda job: job["state"] == "running" and _step(job) >= 4, timeout=90)
    persistent_redis.stop()
    response = stack.client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 503 and response.json()["code"] == "broker_unavailable"
    time.sleep(3)  # the job's method has returned meanwhile; recording retries with backoff
    persistent_redis.start()
    job = stack.wait(job_id, timeout=90)
    assert job["state"] == "succeeded", job
    assert job["result"]["losses"] and len(job["result"]["losses"]) == 4


def test_a_failed_send_leaves_no_dedup_key_and_the_job_ends_failed_with_a_reason(stack, chelsea, monkeypatch):
    image_id = stack.upload(chelsea.resize((40, 40)))
    stack.client.get("/v1/jobs")  # the app's job service is made on first use
    service = stack.client.app.state.job_service

    def broken_send(*_args, **_kwargs):
        raise OperationalError("the broker hung up")

    def broken_remove(_job_id):
        raise redis.exceptions.ConnectionError("and Redis too")

    with monkeypatch.context() as patch:
        patch.setattr(service_module, "send_job", broken_send)
        patch.setattr(service.jobs, "remove", broken_remove)
        refused = stack.submit("probe_steps", image_id, steps=2, size=32)
    assert refused.status_code == 503
    orphan = service.jobs.list("public", state="queued", limit=5)[0][0]

    time.sleep(service.jobs.send_grace + 0.1)  # until then an unsent twin counts as being sent (and is shared)
    again = stack.submit("probe_steps", image_id, steps=2, size=32)  # identical: not handed the orphaned job
    assert again.status_code == 202 and again.json()["id"] != orphan.id
    assert stack.wait(again.json()["id"])["state"] == "succeeded"
    failed = stack.wait(orphan.id, timeout=30)  # the reaper fails it once unsent_job_seconds pass
    assert failed["state"] == "failed" and failed["error"]["code"] == "not_sent"


def test_a_worker_stopped_with_sigterm_finishes_its_job_first(stack, chelsea):
    image_id = stack.upload(chelsea.resize((44, 44)))
    job_id = stack.submit("probe_steps", image_id, steps=8, sleep=0.3, size=32).json()["id"]
    stack.poll(job_id, lambda job: job["state"] == "running" and _step(job) >= 2, timeout=90)
    assert stack.worker.terminate(timeout=60) == 0
    job = stack.client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["deliveries"] == 1 and _step(job) == 8
    stack.worker.start()
    assert stack.wait(stack.submit("probe_steps", image_id, steps=1, size=32).json()["id"])["state"] == "succeeded"


def test_a_job_whose_worker_vanished_is_requeued_by_the_reaper_well_before_the_visibility_timeout(stack, chelsea):
    """The whole worker is SIGKILLed: its message stays unacknowledged until the visibility timeout
    (40 s here, hours in production); the heartbeat stops, and the next worker's reaper requeues it."""
    image_id = stack.upload(chelsea.resize((52, 52)))
    job_id = stack.submit("probe_steps", image_id, steps=6, sleep=0.3, size=32).json()["id"]
    stack.poll(job_id, lambda job: job["state"] == "running" and _step(job) >= 2, timeout=90)
    stack.worker.kill()
    stack.worker.start()
    job = stack.wait(job_id, timeout=35)
    assert job["state"] == "succeeded" and job["deliveries"] == 2


def test_a_single_style_id_is_taken_as_a_list_of_one(stack, chelsea, coffee):
    content, style = stack.upload(chelsea.resize((40, 40))), stack.upload(coffee.resize((40, 40)))
    body = {"method": "style_transfer", "model": "vgg19", "inputs": {"content": content, "style": style},
            "params": {"max_side": 32, "steps": 1, "scales": 1, "optimizer": "adam"}}
    response = stack.client.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["inputs"]["style"] == [style]
    job = stack.wait(response.json()["id"], timeout=120)
    assert job["state"] == "succeeded", job["error"]
