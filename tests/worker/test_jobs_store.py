"""Job records in a real Redis: creation and dedup, deliveries and poison pills, cancel, progress, listing."""

import json
import time

import pytest
from PIL import Image

from engine.errors import Cancelled
from worker.jobs import Job, JobQuotaExceeded, JobStore, new_job_id
from worker.settings import Settings
from worker.storage import FilesystemStorage
from worker.tasks import JobProgress


@pytest.fixture
def store(redis_client):
    return JobStore(redis_client, ttl_seconds=600)


def make_job(content_hash: str = "h1", **fields) -> Job:
    values = dict(method="classify", model="efficientnet_lite0", queue="cpu", params={"top_k": 5}, inputs={"image": "a" * 32})
    return Job(id=new_job_id(), content_hash=content_hash, **{**values, **fields})


def test_created_job_reads_back_with_types_and_ttl(store, redis_client):
    job, created = store.create(make_job(inputs={"style": ["b" * 32, "c" * 32], "image": "a" * 32}))
    assert created
    again = store.get(job.id)
    assert again == job
    assert again.input_ids() == ["b" * 32, "c" * 32, "a" * 32]
    assert 0 < redis_client.ttl(store.key(job.id)) <= 600
    assert store.get("0" * 24) is None


def test_identical_job_is_shared_until_it_fails_or_is_cancelled(store):
    first, _ = store.create(make_job("same"))
    store.mark_sent(first)
    twin, created = store.create(make_job("same"))
    assert not created and twin.id == first.id
    store.start(first.id, 3, "w:1")
    store.fail(first, "internal_error", "boom")
    retry, created = store.create(make_job("same"))
    assert created and retry.id != first.id
    assert store.cancel(retry.id, "public") == "cancelled"
    third, created = store.create(make_job("same"))
    assert created and third.id not in {first.id, retry.id}


def test_identical_submissions_share_a_job_still_being_sent_but_not_an_old_unsent_one(store):
    sending, _ = store.create(make_job("racing"))  # created, its message not yet sent
    twin, created = store.create(make_job("racing"))
    assert not created and twin.id == sending.id  # arrived while the first submission was sending it
    orphan, _ = store.create(make_job("orphan", created_at=time.time() - 2 * store.send_grace))  # send and removal failed
    fresh, created = store.create(make_job("orphan"))
    assert created and fresh.id != orphan.id


def test_deliveries_are_counted_and_a_poison_pill_fails(store):
    job, _ = store.create(make_job())
    assert [store.start(job.id, 2, "w:1") for _ in range(2)] == [("run", 1), ("run", 2)]
    store.stop_heartbeat("w:1")  # its worker died
    assert store.start(job.id, 2, "w:2") == ("poisoned", 3)
    failed = store.get(job.id)
    assert failed.state == "failed" and failed.error["code"] == "poison_pill" and failed.finished_at
    assert store.start(job.id, 2, "w:3") == ("finished", 0)
    assert store.start("0" * 24, 2, "w:3") == ("missing", 0)


def test_cancel_queued_running_and_finished(store, redis_client):
    queued, _ = store.create(make_job("q"))
    assert store.cancel(queued.id, "public") == "cancelled"
    assert store.start(queued.id, 3, "w:1") == ("finished", 0)  # a cancelled job never runs
    assert store.get(queued.id).deliveries == 0

    running, _ = store.create(make_job("r"))
    store.start(running.id, 3, "w:1")
    assert not store.report_progress(running.id, {"step": 1})
    assert store.cancel(running.id, "public") == "requested"
    assert store.report_progress(running.id, {"step": 2})  # the worker is told to stop
    assert store.get(running.id).state == "running"
    store.stop_heartbeat("w:1")
    assert store.start(running.id, 3, "w:2") == ("cancelled", 0)  # redelivered after cancel: not rerun
    assert store.cancel(running.id, "public") == "finished"
    assert store.cancel("0" * 24, "public") == "missing"


def test_a_repeated_cancel_past_the_grace_period_terminates(store):
    job, _ = store.create(make_job("t"))
    store.start(job.id, 3, "w:1")
    assert store.cancel(job.id, "public", grace_seconds=60) == "requested"
    asked = store.get(job.id).cancel_requested_at
    assert asked and store.get(job.id).state == "running"
    assert store.cancel(job.id, "public", grace_seconds=60) == "requested"  # within the grace period: still asking
    assert store.get(job.id).cancel_requested_at == asked  # the grace period runs from the first request
    assert store.cancel(job.id, "public", grace_seconds=-1) == "requested"  # negative: never terminate
    time.sleep(0.05)
    assert store.cancel(job.id, "public", grace_seconds=0.01) == "terminate"
    killed = store.get(job.id)
    assert killed.state == "cancelled" and killed.finished_at >= asked
    assert store.start(job.id, 3, "w:2") == ("finished", 0)  # redelivered after the kill: not run again
    assert store.finish(job, "succeeded", result={"top": []}) is None  # its late ending is ignored
    assert store.cancel(job.id, "public", grace_seconds=0) == "finished"


def test_a_job_asked_to_cancel_never_ends_succeeded(store):
    job, _ = store.create(make_job("c"))
    store.start(job.id, 3, "w:1")
    store.cancel(job.id, "public")
    assert store.finish(job, "succeeded", artifacts=[{"name": "x.png"}], result={"top": []}) == "cancelled"
    done = store.get(job.id)
    assert (done.state, done.artifacts, done.result) == ("cancelled", [], None)

    failing, _ = store.create(make_job("f"))
    store.start(failing.id, 3, "w:1")
    store.cancel(failing.id, "public")
    assert store.fail(failing, "internal_error", "boom") == "failed"  # a failure is still reported as one


def test_finish_only_moves_a_running_job_and_publishes(store, redis_client):
    job, _ = store.create(make_job())
    pubsub = redis_client.pubsub()
    pubsub.subscribe(store.channel(job.id))
    assert not store.finish(job, "succeeded")  # still queued
    store.start(job.id, 3, "w:1")
    assert store.finish(job, "succeeded", artifacts=[{"name": "x.png"}], result={"top": []})
    assert not store.fail(job, "late", "a second ending is ignored")
    done = store.get(job.id)
    assert (done.state, done.artifacts, done.result, done.error) == ("succeeded", [{"name": "x.png"}], {"top": []}, None)
    events, deadline = [], time.monotonic() + 1
    while len(events) < 3 and time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            events.append(message["data"])
    assert events == [b"state", b"state"]  # started, finished
    pubsub.close()


def test_progress_is_stored_only_while_running_and_when_asked(store):
    job, _ = store.create(make_job())
    assert store.report_progress(job.id, {"step": 1})  # not running: stop
    store.start(job.id, 3, "w:1")
    store.report_progress(job.id, {"step": 1})
    store.report_progress(job.id, {"step": 2}, store=False)
    assert store.get(job.id).progress == {"step": 1}


def test_list_is_newest_first_paginated_filtered_and_forgets_expired(store, redis_client):
    jobs = [store.create(make_job(f"h{i}"))[0] for i in range(7)]
    store.cancel(jobs[2].id, "public")
    store.cancel(jobs[5].id, "public")
    redis_client.delete(store.key(jobs[3].id))  # expired record
    page, cursor = store.list("public", limit=3)
    assert [j.id for j in page] == [jobs[6].id, jobs[5].id, jobs[4].id] and cursor == jobs[4].id
    page, cursor = store.list("public", limit=3, cursor=cursor)
    assert [j.id for j in page] == [jobs[2].id, jobs[1].id, jobs[0].id]
    assert store.list("public", limit=3, cursor=cursor)[0] == []
    cancelled, cursor = store.list("public", state="cancelled", limit=10)
    assert [j.id for j in cancelled] == [jobs[5].id, jobs[2].id] and cursor is None
    assert redis_client.zscore(store.index("public"), jobs[3].id) is None


def test_progress_callback_reports_eta_throttles_previews_and_cancels(store, tmp_path):
    settings = Settings(progress_interval_seconds=0, preview_interval_seconds=60)
    storage = FilesystemStorage(tmp_path)
    job, _ = store.create(make_job())
    store.start(job.id, 3, "w:1")
    progress = JobProgress(store, storage, job, settings)
    image = Image.new("RGB", (8, 8), "red")
    progress(1, 4, preview=image, loss=1.5)
    time.sleep(0.05)
    progress(2, 4, preview=Image.new("RGB", (8, 8), "blue"), loss=1.0)
    stored = store.get(job.id).progress
    assert stored["step"] == 2 and stored["fraction"] == 0.5 and stored["eta_seconds"] > 0
    assert stored["info"] == {"loss": 1.0} and stored["preview_step"] == 1  # second preview throttled
    assert Image.open(tmp_path / "previews" / f"{job.id}.png").getpixel((0, 0)) == (255, 0, 0)
    store.cancel(job.id, "public")
    with pytest.raises(Cancelled):
        progress(3, 4)
    assert json.loads(json.dumps(progress.final()))["fraction"] == 1.0


def test_a_tenant_sees_only_its_own_jobs_and_never_shares_a_twin(store):
    mine, _ = store.create(make_job("same", tenant="alice"))
    theirs, created = store.create(make_job("same", tenant="bob"))
    assert created and theirs.id != mine.id  # identical submissions of two tenants: two records
    assert store.get_owned(mine.id, "alice") == mine
    assert store.get_owned(mine.id, "bob") is None
    assert [j.id for j in store.list("bob")[0]] == [theirs.id]
    assert store.cancel(mine.id, "bob") == "missing"
    assert store.get(mine.id).state == "queued"  # untouched by the foreign cancel
    assert store.cancel(mine.id, "alice") == "cancelled"


def test_active_job_quota_counts_queued_and_running_jobs_only(store):
    first, _ = store.create(make_job("a1", tenant="carol"), max_active=2)
    second, _ = store.create(make_job("a2", tenant="carol"), max_active=2)
    with pytest.raises(JobQuotaExceeded, match="at most 2"):
        store.create(make_job("a3", tenant="carol"), max_active=2)
    store.mark_sent(first)
    twin, created = store.create(make_job("a1", tenant="carol"), max_active=2)
    assert not created and twin.id == first.id  # a twin of a queued (sent) job costs nothing
    store.create(make_job("d1", tenant="dave"), max_active=2)  # another tenant has its own count
    store.start(second.id, 3, "w:1")
    store.fail(second, "internal_error", "boom")
    third, created = store.create(make_job("a3", tenant="carol"), max_active=2)
    assert created and third.state == "queued"
