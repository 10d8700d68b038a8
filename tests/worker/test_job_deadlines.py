"""Job deadlines in the state machine (real Redis): a job not started in time ends aborted, never runs."""

import time

from tests.worker.test_jobs_store import make_job, store  # noqa: F401  (the fixture)


def test_a_queued_job_past_its_deadline_is_aborted_at_start(store):  # noqa: F811
    job = make_job("late", deadline_at=time.time() - 0.01)
    store.create(job)
    assert store.start(job.id, 3, "w:1") == ("aborted", 0)
    aborted = store.get(job.id)
    assert aborted.state == "aborted" and aborted.finished and aborted.started_at is None
    assert aborted.error["code"] == "deadline_passed" and aborted.deliveries == 0
    assert store.redis.zscore(store.active, job.id) is None  # finished: out of the reaper's set
    assert store.reap(0) == {"requeue": [], "failed": [], "aborted": []}
    assert store.start(job.id, 3, "w:1") == ("finished", 0)  # a redelivery does nothing


def test_a_job_started_before_its_deadline_runs(store):  # noqa: F811
    job = make_job("in-time", deadline_at=time.time() + 60)
    store.create(job)
    assert store.start(job.id, 3, "w:1") == ("run", 1)
    assert store.get(job.id).state == "running"


def test_an_aborted_job_is_not_shared_with_a_new_identical_submission(store):  # noqa: F811
    late = make_job("twin", deadline_at=time.time() - 1)
    store.create(late)
    store.start(late.id, 3, "w:1")
    fresh, created = store.create(make_job("twin"))
    assert created and fresh.id != late.id


def test_the_reaper_aborts_a_queued_job_past_its_deadline_before_any_worker_reaches_it(store):  # noqa: F811
    late, _ = store.create(make_job("waiting", deadline_at=time.time() + 0.2))
    store.mark_sent(late)
    assert store.reap(3600)["aborted"] == []  # not late yet
    time.sleep(0.3)
    assert store.reap(3600) == {"requeue": [], "failed": [], "aborted": [late.id]}
    aborted = store.get(late.id)
    assert aborted.state == "aborted" and aborted.error["code"] == "deadline_passed"
    assert store.redis.zscore(store.active, late.id) is None
    assert store.start(late.id, 3, "w:1") == ("finished", 0)  # its message, delivered later, runs nothing
