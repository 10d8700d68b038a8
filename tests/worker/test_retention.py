"""Retention: expired job records take their stored objects with them, old uploads go, and nothing
else is touched. Both backends: the filesystem and a real S3 API server (moto)."""

import time
import uuid

import pytest

from tests.worker.test_jobs_store import make_job
from tests.worker.test_storage import s3_settings
from worker.jobs import JobStore
from worker.retention import sweep
from worker.usage import stored_bytes_key
from worker.settings import Settings
from worker.storage import make_storage


@pytest.fixture(params=["filesystem", "s3"])
def storage(request, tmp_path, s3_server):
    if request.param == "s3":
        return make_storage(s3_settings(s3_server, f"r-{uuid.uuid4().hex[:12]}", s3_create_bucket=True))
    return make_storage(Settings(storage="filesystem", storage_dir=str(tmp_path / "store")))


def _keys(storage, prefix=""):
    return sorted(key for key, _ in storage.list(prefix))


def test_expired_records_and_their_objects_go_unexpired_ones_stay(storage, redis_client):
    short, long = JobStore(redis_client, ttl_seconds=1), JobStore(redis_client, ttl_seconds=600)
    gone, _ = short.create(make_job("gone", inputs={"image": "a" * 32}))
    kept, _ = long.create(make_job("kept", inputs={"image": "b" * 32}))
    for job in (gone, kept):
        storage.put(f"jobs/{job.id}/image.png", b"png", "image/png")
        storage.put(f"jobs/{job.id}/result.json", b"{}", "application/json")
        storage.put(f"previews/{job.id}.png", b"png", "image/png")
    storage.put("images/public/" + "a" * 32, b"old upload, its job has expired", "image/png")
    storage.put("images/public/" + "b" * 32, b"old upload read by a queued job", "image/png")
    storage.put("images/public/" + "c" * 32, b"old upload", "image/png")
    storage.put("models/mine.onnx", b"not ours to delete", "application/octet-stream")
    time.sleep(2.1)  # the short record expires; the uploads above are now 2 s old
    storage.put("images/public/" + "d" * 32, b"fresh upload", "image/png")

    assert short.get(gone.id) is None and long.get(kept.id) is not None
    deleted = sweep(storage, long, upload_ttl_seconds=1.5)

    assert deleted == {"artifacts": 2, "previews": 1, "images": 2}
    assert _keys(storage) == sorted([
        f"jobs/{kept.id}/image.png", f"jobs/{kept.id}/result.json", f"previews/{kept.id}.png",
        "images/public/" + "b" * 32, "images/public/" + "d" * 32, "models/mine.onnx",
    ])
    assert sweep(storage, long, upload_ttl_seconds=1.5) == {"artifacts": 0, "previews": 0, "images": 0}


def test_a_swept_upload_gives_its_bytes_back_to_its_tenants_quota(storage, redis_client):
    jobs = JobStore(redis_client, ttl_seconds=600)
    counter = stored_bytes_key(jobs.prefix, "alice")
    redis_client.set(counter, 1000)
    storage.put("images/alice/" + "e" * 32, b"x" * 300, "image/png")
    storage.put("images/bob/" + "f" * 32, b"y" * 50, "image/png")  # bob's quota was never counted
    time.sleep(1.1)
    assert sweep(storage, jobs, upload_ttl_seconds=0.5)["images"] == 2
    assert int(redis_client.get(counter)) == 700
    assert int(redis_client.get(stored_bytes_key(jobs.prefix, "bob")) or 0) == 0  # never below zero
