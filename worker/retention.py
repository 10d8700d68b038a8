"""Retention: stored objects are deleted once what they belong to has expired, and nothing else is.

Job records expire in Redis ``job_ttl_seconds`` after their last change; the
sweep then deletes their artifacts (``jobs/<id>/...``) and preview
(``previews/<id>.png``). Uploads (``images/<tenant>/<id>``) are deleted
``upload_ttl_seconds`` after their last upload, unless an unfinished job
still reads them, and their bytes go back to their tenant's stored-bytes
quota. Keys under any other prefix are never touched. On S3 the
same can be enforced by lifecycle rules (see README, "Retention").
"""

import logging
import time

from worker.jobs import JobStore
from worker.storage import Storage
from worker.usage import release_stored_bytes

log = logging.getLogger(__name__)


def sweep(storage: Storage, jobs: JobStore, upload_ttl_seconds: float, now: float | None = None) -> dict[str, int]:
    """Delete the objects of expired jobs and uploads; returns how many of each kind went."""
    now = time.time() if now is None else now
    deleted = {"artifacts": 0, "previews": 0, "images": 0}
    known: dict[str, bool] = {}

    def expired(job_id: str) -> bool:
        if job_id not in known:
            known[job_id] = jobs.get(job_id) is None
        return known[job_id]

    for key, _modified in list(storage.list("jobs/")):
        parts = key.split("/")
        if len(parts) >= 3 and expired(parts[1]):
            storage.delete(key)
            deleted["artifacts"] += 1
    for key, _modified in list(storage.list("previews/")):
        name = key.split("/", 1)[1]
        if name.endswith(".png") and expired(name[: -len(".png")]):
            storage.delete(key)
            deleted["previews"] += 1
    in_use = jobs.unfinished_inputs()
    for key, modified in list(storage.list("images/")):
        if now - modified > upload_ttl_seconds and key.split("/", 1)[1] not in in_use:
            size = len(storage.get(key))
            storage.delete(key)
            release_stored_bytes(jobs.redis, jobs.prefix, key.split("/")[1], size)  # the tenant's quota gets it back
            deleted["images"] += 1
    if any(deleted.values()):
        log.info("retention sweep deleted %s", deleted)
    return deleted
