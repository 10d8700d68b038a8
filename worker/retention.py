"""Retention: stored objects are deleted once what they belong to has expired, and nothing else is.

Job records expire in Redis ``job_ttl_seconds`` after their last change; the
sweep then deletes their artifacts (``jobs/<id>/...``) and preview
(``previews/<id>.png``). Uploads (``images/<tenant>/<id>``) are deleted
``upload_ttl_seconds`` after their last upload, unless a collection of their
tenant lists them or an unfinished job still reads them
(:mod:`worker.image_holds`), and their bytes go back to their tenant's
stored-bytes quota; their upload marks (``uploads/...``) go with them. Keys
under any other prefix are never touched. On S3 the
same can be enforced by lifecycle rules (see docs/jobs.md, "Retention"), as long
as they spare the images collections hold.
"""

import logging
import time

from worker.image_holds import ImageHolds
from worker.jobs import JobStore
from worker.storage import Storage

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
    holds, in_use = ImageHolds(storage, jobs), jobs.unfinished_inputs()
    collected: dict[str, set[str]] = {}  # per tenant, read once
    for key, modified in list(storage.list("images/")):
        parts = key.split("/")
        if len(parts) != 3 or now - modified <= upload_ttl_seconds or key.split("/", 1)[1] in in_use:
            continue
        _images, tenant, image_id = parts
        if tenant not in collected:
            collected[tenant] = holds.collected(tenant)
        if image_id not in collected[tenant]:
            holds.delete(tenant, image_id)  # the tenant's quota gets its bytes back
            deleted["images"] += 1
    if any(deleted.values()):
        log.info("retention sweep deleted %s", deleted)
    return deleted
