"""A worker that takes a job's message while Redis is unreachable hands the message back
(Reject with requeue) instead of acknowledging it: an acknowledged message would leave the job
queued, never started, until the reaper resends it an hour later (the chaos test's stuck job)."""

from types import SimpleNamespace

import pytest
from celery.exceptions import Reject

from tests.e2e.servers import free_port
from tests.worker.test_jobs_store import make_job
from worker.jobs import JobStore, connect
from worker.settings import Settings
from worker.tasks import run_job


def test_a_job_whose_start_cannot_be_recorded_is_rejected_for_requeue_not_acknowledged(redis_client, monkeypatch):
    job, _ = JobStore(redis_client, ttl_seconds=600).create(make_job(method="filters", model="vgg19", params={}, inputs={}))
    monkeypatch.setenv("CONVLENS_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    settings = Settings()
    unreachable = JobStore(connect(settings), ttl_seconds=600)
    with pytest.raises(Reject) as rejected:
        run_job(SimpleNamespace(jobs=unreachable, settings=settings), job.id)
    assert rejected.value.requeue is True
    assert JobStore(redis_client, ttl_seconds=600).get(job.id).state == "queued"
