"""Queue position and wait estimate: the arithmetic (pure), then the store's bookkeeping in a real Redis."""

import pytest

from worker.jobs import RECENT_DURATIONS, Job, JobStore, new_job_id
from worker.queue_estimate import Ahead, queue_estimate, remaining_seconds

NOW = 1000.0


def test_nothing_ahead_is_next_with_no_wait():
    assert queue_estimate([], {}, NOW) == {"position": 0, "estimated_wait_seconds": 0.0, "based_on": 0}


def test_a_running_job_ahead_leaves_its_median_minus_what_it_has_run():
    ahead = [Ahead("probe", running=True, started_at=NOW - 3)]
    assert queue_estimate(ahead, {"probe": [9.0, 10.0, 30.0]}, NOW) == {"position": 1, "estimated_wait_seconds": 7.0, "based_on": 3}


def test_queued_jobs_ahead_add_their_medians_and_busy_workers_share_them():
    ahead = [Ahead("a", running=True, started_at=NOW - 1), Ahead("b", running=True, started_at=NOW - 2), Ahead("a", running=False)]
    # remaining: a 4-1=3, b 6-2=4, queued a 4: 11 s of work for the 2 busy workers
    estimate = queue_estimate(ahead, {"a": [4.0, 4.0], "b": [6.0], "c": [1.0]}, NOW)
    assert estimate == {"position": 3, "estimated_wait_seconds": 5.5, "based_on": 3}


def test_a_running_job_takes_the_later_of_its_median_and_its_own_eta_never_below_zero():
    overrun = Ahead("probe", running=True, started_at=NOW - 50)
    assert remaining_seconds(overrun, 10.0, NOW) == 0.0
    long_one = Ahead("probe", running=True, started_at=NOW - 5, eta_seconds=40.0, reported_at=NOW - 2)
    assert remaining_seconds(long_one, 10.0, NOW) == 38.0
    assert remaining_seconds(long_one, None, NOW) == 38.0


def test_unknown_when_a_job_ahead_has_no_recent_run_and_no_eta():
    ahead = [Ahead("new", running=False)]
    assert queue_estimate(ahead, {}, NOW) == {"position": 1, "estimated_wait_seconds": None, "based_on": 0}


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client, ttl_seconds=600)


def _job(method: str = "probe", queue: str = "gpu", created_at: float | None = None) -> Job:
    job = Job(id=new_job_id(), method=method, model="m", queue=queue, params={}, inputs={}, content_hash=new_job_id())
    if created_at is not None:
        job.created_at = created_at
    return job


def test_position_counts_unfinished_jobs_of_the_same_queue_created_before(store):
    running, _ = store.create(_job())
    other_queue, _ = store.create(_job(queue="cpu"))
    queued, _ = store.create(_job())
    me, _ = store.create(_job())
    later, _ = store.create(_job())
    assert store.start(running.id, 3, "w1")[0] == "run"
    info = store.queue_info(store.get(me.id))
    assert info["position"] == 2 and info["estimated_wait_seconds"] is None  # no run of probe known yet
    store.cancel(queued.id, "public")
    assert store.queue_info(store.get(me.id))["position"] == 1
    assert store.queue_info(store.get(later.id))["position"] == 2
    assert store.queue_info(store.get(running.id)) is None  # running: no queue info
    assert other_queue and store.queue_info(store.get(other_queue.id))["position"] == 0


def test_succeeded_runs_are_remembered_per_method_last_ones_only_and_feed_the_estimate(store, redis_client):
    for _ in range(RECENT_DURATIONS + 2):
        job, _ = store.create(_job())
        store.start(job.id, 3, "w1")
        store.finish(store.get(job.id), "succeeded")
    failed, _ = store.create(_job())
    store.start(failed.id, 3, "w1")
    store.fail(store.get(failed.id), "boom", "a failed run says nothing of a method's duration")
    assert redis_client.llen(store._durations_key("probe")) == RECENT_DURATIONS
    running, _ = store.create(_job())
    store.start(running.id, 3, "w1")
    me, _ = store.create(_job())
    info = store.queue_info(store.get(me.id))
    assert info["position"] == 1 and info["based_on"] == RECENT_DURATIONS
    assert 0 <= info["estimated_wait_seconds"] < 1  # these runs took milliseconds
