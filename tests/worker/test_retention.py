"""Retention: expired job records take their stored objects with them, old uploads go, and nothing
else is touched. Both backends: the filesystem and a real S3 API server (moto)."""

import time
import uuid

import pytest
from PIL import Image

from tests.pictures import encode
from tests.worker.test_jobs_store import make_job
from tests.worker.test_storage import s3_settings
from worker.collections import CollectionLimits, CollectionStore
from worker.image_holds import mark_uploaded
from worker.jobs import JobStore
from worker.retention import sweep
from worker.usage import StoredBytes
from worker.settings import Settings
from worker.storage import make_storage
from worker.uploads import content_id


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


def test_a_swept_upload_gives_its_bytes_back_to_its_tenants_quota_once(storage, redis_client):
    jobs = JobStore(redis_client, ttl_seconds=600)
    usage = StoredBytes(redis_client, jobs.prefix)
    swept, kept = "images/alice/" + "e" * 32, "images/alice/" + "1" * 32
    assert usage.reserve("alice", {swept: 300, kept: 700}, limit=10_000)
    storage.put(swept, b"x" * 300, "image/png")
    storage.put("images/bob/" + "f" * 32, b"y" * 50, "image/png")  # bob's quota was never counted
    time.sleep(2.1)  # S3 keeps whole seconds
    storage.put(kept, b"z" * 700, "image/png")
    assert sweep(storage, jobs, upload_ttl_seconds=1.5)["images"] == 2
    assert usage.used("alice") == 700
    usage.release("alice", [swept])  # released already: a second release gives nothing back
    assert usage.used("alice") == 700
    assert usage.used("bob") == 0  # never below zero


def test_images_a_collection_holds_outlive_the_upload_ttl(storage, redis_client):
    jobs = JobStore(redis_client, ttl_seconds=600)
    limits = CollectionLimits(max_images=8, max_bytes=10**6, max_pixels=10**6, max_image_pixels=10**6)
    teal, orange = encode(Image.new("RGB", (8, 8), "teal")), encode(Image.new("RGB", (8, 8), "orange"))
    held = CollectionStore(storage, limits).create("alice", "kept", [("teal.png", teal)])
    storage.put("images/alice/" + content_id(orange), orange, "image/png")  # an upload no collection lists
    mark_uploaded(storage, "alice", content_id(orange))
    time.sleep(1.1)
    assert sweep(storage, jobs, upload_ttl_seconds=0.5)["images"] == 1
    assert _keys(storage, "images/") == ["images/alice/" + held.images[0].id]
    assert _keys(storage, "uploads/") == []  # its upload mark went with it
