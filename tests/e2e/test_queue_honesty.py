"""Queue honesty with a real worker (concurrency 1) and jobs of known duration: a job queued behind a
running one reports position 1 and an estimated wait within 2x of the wait it then has, in its body and
its event stream; once it runs, the queue info is gone."""

import json
import time
from datetime import datetime

import pytest

from tests.e2e.conftest import start_stack, stack_env

STEPS, SLEEP = 4, 0.5  # probe_steps sleeps after each step: a run of about STEPS * SLEEP seconds


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("queue-honesty")
    stack = start_stack(stack_env(redis_server.url, "filesystem", tmp, None), tmp / "worker.log")
    yield stack
    stack.client.close()
    stack.worker.stop()


def _events(stack, job_id: str):
    with stack.client.stream("GET", f"/v1/jobs/{job_id}/events") as response:
        assert response.status_code == 200
        event = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                yield event, json.loads(line[len("data: "):])


def _moment(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_a_job_behind_a_running_one_reports_position_1_and_an_estimate_within_2x_of_its_wait(stack, chelsea):
    image_id = stack.upload(chelsea.resize((48, 48)))
    # recent runs of the method: a warm-up (loads the model) and two of the known duration
    seeds = [stack.submit("probe_steps", image_id, steps=1, size=32).json()["id"]]
    seeds += [stack.submit("probe_steps", image_id, steps=STEPS, sleep=SLEEP, size=size).json()["id"] for size in (34, 36)]
    assert [stack.wait(job_id)["state"] for job_id in seeds] == ["succeeded"] * 3

    long_one = stack.submit("probe_steps", image_id, steps=STEPS, sleep=SLEEP, size=40)
    behind = stack.submit("probe_steps", image_id, steps=1, size=42)
    assert long_one.status_code == behind.status_code == 202
    assert behind.json()["queue"]["position"] == 1  # the submit answer carries it too
    job_id = behind.json()["id"]

    job = stack.client.get(f"/v1/jobs/{job_id}").json()
    checked = time.time()
    assert job["state"] == "queued", job
    queue = job["queue"]
    assert queue["position"] == 1 and queue["based_on"] == 3, queue
    estimate = queue["estimated_wait_seconds"]
    assert estimate is not None and estimate > 0, queue

    stream = list(_events(stack, job_id))
    queued = [body for name, body in stream if name == "progress" and body["state"] == "queued"]
    assert queued and all(body["queue"]["position"] == 1 and body["queue"]["based_on"] == 3 for body in queued), queued
    assert all(body["queue"] is None for _, body in stream if body["state"] != "queued")
    assert stream[-1][0] == "state" and stream[-1][1]["state"] == "succeeded"

    ran = stack.client.get(f"/v1/jobs/{job_id}").json()
    assert ran["queue"] is None
    waited = _moment(ran["started_at"]) - checked
    assert estimate / 2 <= waited <= estimate * 2, (estimate, waited)
