"""Jobs never stuck, in a real Redis: heartbeats, the reaper, dedup keys of jobs whose send failed."""

import time

import pytest

from tests.worker.test_jobs_store import make_job
from worker.jobs import JobStore


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client, ttl_seconds=600, heartbeat_seconds=0.1)  # a heartbeat lives 0.3 s


def test_a_second_delivery_of_a_job_whose_worker_beats_is_a_duplicate(store):
    job, _ = store.create(make_job())
    assert store.start(job.id, 3, "w:1") == ("run", 1)
    assert store.start(job.id, 3, "w:2") == ("duplicate", 0)
    assert store.get(job.id).worker == "w:1" and store.get(job.id).deliveries == 1


def test_the_reaper_requeues_a_running_job_whose_worker_stopped_beating(store):
    job, _ = store.create(make_job())
    store.mark_sent(job)
    store.start(job.id, 3, "w:1")
    store.heartbeat("w:1")
    assert store.reap(3600) == {"requeue": [], "failed": [], "aborted": []}  # alive
    time.sleep(0.4)
    assert store.reap(3600) == {"requeue": [job.id], "failed": [], "aborted": []}
    assert store.get(job.id).state == "queued"
    assert store.start(job.id, 3, "w:2") == ("run", 2)


def test_a_lost_job_requeued_once_its_deliveries_are_spent_fails_as_a_poison_pill(store):
    job, _ = store.create(make_job())
    store.mark_sent(job)
    for worker in ("w:1", "w:2"):
        assert store.start(job.id, 2, worker)[0] == "run"
        store.stop_heartbeat(worker)  # the worker died
        assert store.reap(3600)["requeue"] == [job.id]
    assert store.start(job.id, 2, "w:3") == ("poisoned", 3)
    failed = store.get(job.id)
    assert failed.state == "failed" and failed.error["code"] == "poison_pill" and failed.error["message"]
    assert store.redis.zcard(store.active) == 0


def test_a_job_never_sent_keeps_no_dedup_key_and_fails_with_a_reason(store, redis_client):
    # its send failed, and so did removing its record; older than the send grace, so no longer being sent
    orphan, _ = store.create(make_job("same", created_at=time.time() - 2 * store.send_grace))
    assert 0 < redis_client.ttl(store._dedup_key(orphan)) <= store.unsent_seconds
    again, created = store.create(make_job("same"))  # an identical submission is not handed the unsent job
    assert created and again.id != orphan.id
    store.mark_sent(again)
    assert redis_client.ttl(store._dedup_key(orphan)) > store.unsent_seconds
    store.unsent_seconds = 0
    assert store.reap(3600) == {"requeue": [], "failed": [orphan.id], "aborted": []}
    assert store.get(orphan.id).error["code"] == "not_sent"
    assert store.get(again.id).state == "queued"  # sent: left alone


def test_a_job_queued_too_long_since_its_send_is_sent_again(store):
    job, _ = store.create(make_job())
    store.mark_sent(job)
    assert store.reap(3600)["requeue"] == []
    time.sleep(0.05)
    assert store.reap(0.01)["requeue"] == [job.id]


def test_finished_and_cancelled_jobs_leave_the_active_set(store):
    done, _ = store.create(make_job("a"))
    cancelled, _ = store.create(make_job("b"))
    store.start(done.id, 3, "w:1")
    store.finish(done, "succeeded")
    store.cancel(cancelled.id, "public")
    assert store.redis.zcard(store.active) == 0
