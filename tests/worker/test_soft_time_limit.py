"""Celery's soft time limit strikes anywhere in a job's worker: wherever it lands, the job ends failed with code time_limit."""

import os
from types import SimpleNamespace

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from tests.worker.test_jobs_store import make_job
from worker import tasks, webhooks
from worker.jobs import JobStore
from worker.settings import Settings
from worker.model_store import ModelStore
from worker.storage import FilesystemStorage
from worker.tasks import JobProgress


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client, ttl_seconds=600)


def started(store: JobStore):
    job, _ = store.create(make_job(method="filters", model="vgg19", params={}, inputs={}))
    store.start(job.id, 3, "w:1")
    return store.get(job.id)


def test_a_write_interrupted_just_after_its_replace_raises_the_limit_not_a_missing_temp_file(tmp_path, monkeypatch):
    storage, replace = FilesystemStorage(tmp_path), os.replace

    def replace_then_interrupt(source, target):
        replace(source, target)
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(SoftTimeLimitExceeded):
        storage.put("previews/job.png", b"png", "image/png")
    assert [p.name for p in (tmp_path / "previews").iterdir()] == ["job.png"]


def test_a_limit_between_a_redis_command_and_its_reply_still_records_time_limit(store, tmp_path, monkeypatch):
    job, client = started(store), store.redis

    def interrupt(*args, **options):  # the reply of the command just sent stays unread on its pooled connection
        del client.parse_response
        raise SoftTimeLimitExceeded()

    def run_call(call, inputs, progress, *rest):
        progress(1, 2)
        client.parse_response = interrupt
        progress(2, 2)

    monkeypatch.setattr(tasks, "run_call", run_call)
    settings, storage = Settings(job_soft_time_limit=6, job_time_limit=9, visibility_timeout=12), FilesystemStorage(tmp_path)
    task = SimpleNamespace(jobs=store, settings=settings, storage=storage, app=None, models=ModelStore(store.redis, storage, settings))
    assert tasks._run(task, job, 1) == "failed"
    assert store.get(job.id).error == {"code": "time_limit", "message": "the job ran past its limit of 6 s"}


def test_progress_past_the_soft_limit_raises_it_when_the_signal_was_swallowed(store, tmp_path):
    settings = Settings(job_soft_time_limit=6, job_time_limit=9, visibility_timeout=12)
    progress = JobProgress(store, FilesystemStorage(tmp_path), started(store), settings)
    progress(1, 3)
    progress.began -= 6
    with pytest.raises(SoftTimeLimitExceeded):
        progress(2, 3)


def test_a_limit_striking_while_a_webhook_is_queued_reaches_the_job(store, monkeypatch):
    job = store.get(store.create(make_job(inputs={}, webhook={"url": "https://example.org/hook", "events": ["progress"]}))[0].id)

    def interrupted(self, job_id, entry, ttl_seconds):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(webhooks.Outbox, "push", interrupted)
    with pytest.raises(SoftTimeLimitExceeded):
        webhooks.enqueue(SimpleNamespace(send_task=lambda *a, **k: None), store, job, "progress")
