"""Webhooks (signed, retried), Prefer: wait and job deadlines, against the live app with real workers."""

import base64
import hashlib
import hmac
import io
import time
from datetime import datetime
from itertools import pairwise

import httpx
import pytest

from tests.e2e.conftest import WEBHOOK_SECRET
from tests.e2e.webhook_receiver import Receiver


@pytest.fixture(scope="module")
def image_id(live, chelsea):
    buffer = io.BytesIO()
    chelsea.resize((64, 48)).save(buffer, format="PNG")
    return httpx.post(f"{live.url}/v1/images", content=buffer.getvalue()).json()["id"]


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def probe_job(image_id: str, tag: float, **extra) -> dict:
    """probe_steps (a test plugin: real forward passes with progress); ``tag`` keeps submissions distinct."""
    params = {"steps": 2, "size": 32, **extra.pop("params", {})}
    params["sleep"] = params.get("sleep", 0.0) + (tag % 1000) * 1e-6
    return {"method": "probe_steps", "model": "efficientnet_lite0", "inputs": {"image": image_id}, "params": params, **extra}


def expected_signature(message_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks, computed here from the spec: v1,base64(HMAC-SHA256(key, id.timestamp.body))."""
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()).decode()


def submit(live, job: dict, **kwargs) -> httpx.Response:
    answer = httpx.post(f"{live.url}/v1/jobs", json=job, **kwargs)
    assert answer.status_code in (200, 202), answer.text
    return answer


def wait_state(live, job_id: str, states=("succeeded", "failed", "cancelled", "aborted"), timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{live.url}/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        time.sleep(0.05)
    raise TimeoutError(job)


def test_completed_delivery_is_signed_and_verifies(live, image_id, receiver):
    job = submit(live, probe_job(image_id, time.time(), webhook={"url": receiver.url})).json()
    delivery = receiver.wait_for("job.completed")
    headers = delivery.headers
    assert headers["webhook-signature"] == expected_signature(headers["webhook-id"], headers["webhook-timestamp"], delivery.body)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    data = delivery.event["data"]
    assert data["id"] == job["id"] and data["state"] == "succeeded" and job["webhook"]["url"] == receiver.url
    assert any(artifact["url"] == f"/v1/jobs/{job['id']}/artifacts/final.png" for artifact in data["artifacts"])
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # the reference implementation

    assert Webhook(WEBHOOK_SECRET).verify(delivery.body, headers)["data"]["id"] == job["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(WEBHOOK_SECRET).verify(delivery.body.replace(b"succeeded", b"failed"), headers)
    tampered = delivery.body.replace(b"succeeded", b"failed")
    assert headers["webhook-signature"] != expected_signature(headers["webhook-id"], headers["webhook-timestamp"], tampered)
    assert [d.event["type"] for d in receiver.deliveries] == ["job.completed"]  # only the events asked for


def test_a_receiver_failing_twice_gets_the_delivery_on_retry(live, image_id):
    receiver = Receiver(fail_first=2)
    try:
        submit(live, probe_job(image_id, time.time(), webhook={"url": receiver.url}))
        delivery = receiver.wait_for("job.completed")
        assert [d.answered for d in receiver.deliveries] == [500, 500, 204]
        assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 1  # one message, three attempts
        gaps = [b.received - a.received for a, b in zip(receiver.deliveries, receiver.deliveries[1:])]
        assert gaps[1] > gaps[0] * 1.3  # exponential backoff (0.2 s, then 0.4 s)
        assert delivery.headers["webhook-signature"] == expected_signature(
            delivery.headers["webhook-id"], delivery.headers["webhook-timestamp"], delivery.body
        )
    finally:
        receiver.close()


def test_start_progress_and_completed_events_with_progress_at_most_every_second(live, image_id, receiver):
    events = ["start", "progress", "completed"]
    job = probe_job(image_id, time.time(), params={"steps": 12, "sleep": 0.25}, webhook={"url": receiver.url, "events": events})
    submitted = submit(live, job).json()
    receiver.wait_for("job.completed")
    kinds = [d.event["type"] for d in receiver.accepted()]
    assert kinds[0] == "job.started" and kinds[-1] == "job.completed"
    progress = [d for d in receiver.accepted("job.progress")]
    assert 2 <= len(progress) <= 4  # about 3 s of steps, one report a second at most
    steps = [d.event["data"]["progress"]["step"] for d in progress]
    assert steps == sorted(steps) and steps[0] >= 1
    assert all(d.event["data"]["id"] == submitted["id"] for d in receiver.accepted())


def test_a_jobs_events_arrive_in_order_one_at_a_time_though_the_first_is_slow_and_retried(live, image_id):
    """The webhooks worker runs 4 threads. job.started is answered slowly, with a 500, then retried, while the
    job's progress events are already queued: none may overtake it, and none may overlap another."""
    receiver = Receiver(fail_first=1, slow_first=1, slow_seconds=1.5)
    try:
        events = ["start", "progress", "completed"]
        job = probe_job(image_id, time.time(), params={"steps": 8, "sleep": 0.25}, webhook={"url": receiver.url, "events": events})
        submit(live, job)
        receiver.wait_for("job.completed")
        seen = receiver.deliveries
        kinds = [d.event["type"] for d in seen]
        assert kinds[:2] == ["job.started", "job.started"] and kinds[-1] == "job.completed", kinds
        assert len(kinds) >= 4 and set(kinds[2:-1]) == {"job.progress"}, kinds
        assert [d.answered for d in seen] == [500] + [204] * (len(seen) - 1)
        assert seen[0].headers["webhook-id"] == seen[1].headers["webhook-id"]  # one message, two attempts
        assert len({d.headers["webhook-id"] for d in seen}) == len(seen) - 1
        steps = [d.event["data"]["progress"]["step"] for d in seen[2:-1]]
        assert steps == sorted(set(steps)), steps
        assert all(b.received >= a.answered_at for a, b in pairwise(seen))  # one at a time
        first_progress = datetime.fromisoformat(seen[2].event["timestamp"]).timestamp()
        assert first_progress < seen[0].answered_at  # it was queued while job.started was still in flight
    finally:
        receiver.close()


def test_a_slow_receiver_of_one_job_does_not_hold_up_another_jobs_deliveries(live, image_id):
    slow, fast = Receiver(slow_first=1, slow_seconds=4.0), Receiver()
    try:
        submit(live, probe_job(image_id, time.time(), webhook={"url": slow.url, "events": ["start"]}))
        submit(live, probe_job(image_id, time.time(), webhook={"url": fast.url, "events": ["start"]}))
        held = slow.wait_for("job.started")
        delivered = fast.wait_for("job.started")
        deadline = time.monotonic() + 10
        while not held.answered_at and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held.received < delivered.received < held.answered_at  # delivered while the other job's waited
    finally:
        slow.close()
        fast.close()


def test_prefer_wait_answers_with_the_finished_job(live, image_id):
    started = time.monotonic()
    answer = submit(live, probe_job(image_id, time.time()), headers={"Prefer": "wait=30"}, timeout=40)
    assert answer.status_code == 200
    assert answer.json()["state"] == "succeeded" and answer.headers["preference-applied"] == "wait=30"
    assert time.monotonic() - started < 30


def test_prefer_wait_times_out_with_202(live, image_id):
    job = probe_job(image_id, time.time(), params={"steps": 5, "sleep": 1.0})
    started = time.monotonic()
    answer = submit(live, job, headers={"Prefer": "wait=1"}, timeout=10)
    waited = time.monotonic() - started
    assert answer.status_code == 202 and answer.json()["state"] in ("queued", "running")
    assert 0.9 < waited < 3
    httpx.delete(f"{live.url}/v1/jobs/{answer.json()['id']}")
    wait_state(live, answer.json()["id"])


def test_a_job_not_started_before_its_deadline_ends_aborted(live, image_id, receiver):
    blocker = submit(live, probe_job(image_id, time.time(), params={"steps": 1, "sleep": 2.5})).json()
    wait_state(live, blocker["id"], ("running",))
    late = probe_job(image_id, time.time(), deadline_seconds=0.5, webhook={"url": receiver.url})
    submitted = submit(live, late).json()
    assert submitted["deadline_at"] is not None
    job = wait_state(live, submitted["id"])
    assert job["state"] == "aborted" and job["error"]["code"] == "deadline_passed" and job["started_at"] is None
    assert receiver.wait_for("job.completed").event["data"]["state"] == "aborted"
    assert wait_state(live, blocker["id"])["state"] == "succeeded"


def test_fifty_waiting_requests_hold_no_threads(live, image_id):
    """Identical submissions share one job; 50 of them waiting (more than the 40 threads of the sync routes'
    pool) leave the API free to answer a sync route at once."""
    from concurrent.futures import ThreadPoolExecutor

    job = probe_job(image_id, time.time(), params={"steps": 4, "sleep": 1.0})  # runs for 4 s or more
    with ThreadPoolExecutor(50) as pool:
        waits = [pool.submit(httpx.post, f"{live.url}/v1/jobs", json=job, headers={"Prefer": "wait=30"}, timeout=40)
                 for _ in range(50)]
        wait_state(live, submit(live, job).json()["id"], ("running",))
        assert httpx.get(f"{live.url}/v1/models", timeout=30).status_code == 200
        done = [future.result().text if future.exception() is None else repr(future.exception())
                for future in waits if future.done()]
        assert not done  # answered while all 50 still wait
        answers = [future.result() for future in waits]
    assert {answer.status_code for answer in answers} == {200}
    assert len({answer.json()["id"] for answer in answers}) == 1
