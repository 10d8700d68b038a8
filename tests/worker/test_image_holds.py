"""Letting go of a deleted collection's images: only those nothing else keeps are deleted, and their bytes
come back once (real Redis, filesystem storage)."""

from PIL import Image

from tests.pictures import encode
from tests.worker.test_jobs_store import make_job
from worker.collections import CollectionLimits, CollectionStore
from worker.image_holds import ImageHolds, mark_uploaded
from worker.jobs import JobStore
from worker.storage import FilesystemStorage
from worker.uploads import content_id
from worker.usage import StoredBytes

LIMITS = CollectionLimits(max_images=8, max_bytes=10**6, max_pixels=10**6, max_image_pixels=10**6)


def test_only_images_nothing_else_keeps_are_deleted_and_given_back_once(redis_client, tmp_path):
    storage, jobs = FilesystemStorage(tmp_path), JobStore(redis_client, ttl_seconds=600)
    usage = StoredBytes(redis_client, jobs.prefix)
    store = CollectionStore(storage, LIMITS, usage)
    uploaded, shared, read, alone = (encode(Image.new("RGB", (8, 8), c)) for c in ("teal", "orange", "purple", "navy"))
    doomed = store.create("hal", "doomed", [(f"{i}.png", p) for i, p in enumerate((uploaded, shared, read, alone))], max_stored_bytes=10**6)
    store.create("hal", "other", [("shared.png", shared)], max_stored_bytes=10**6)
    mark_uploaded(storage, "hal", content_id(uploaded))
    jobs.create(make_job(inputs={"image": content_id(read)}, tenant="hal"))  # queued: it will read the picture
    before = usage.used("hal")

    removed = store.delete("hal", doomed.id)
    holds = ImageHolds(storage, jobs)
    assert holds.let_go("hal", removed.image_ids()) == [content_id(alone)]
    assert sorted(key for key, _ in storage.list("images/")) == sorted(f"images/hal/{content_id(p)}" for p in (uploaded, shared, read))
    assert usage.used("hal") == before - len(alone)
    holds.delete("hal", content_id(alone))  # deleted again (the sweep racing): nothing more comes back
    assert usage.used("hal") == before - len(alone)
