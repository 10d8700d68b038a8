"""What keeps a tenant's stored image, and deleting the images nothing keeps any more.

An image (``images/<tenant>/<id>``, :mod:`worker.uploads`) is one object
however it came in: images are content-addressed, so a picture uploaded on
its own and put in two collections is stored, and counted, once. It is kept by
- its own upload (``POST /v1/images``; marked by an empty ``uploads/<tenant>/<id>``
  beside it), until the retention sweep expires it ``upload_ttl_seconds``
  after its last upload;
- each of the tenant's collections that lists it;
- each unfinished job that reads it.
Deleting a collection deletes at once the images it alone kept; the sweep
(:mod:`worker.retention`) deletes expired uploads nothing else keeps. Either
way their bytes go back to the tenant's quota (:mod:`worker.usage`) once.
"""

from worker.collections import owned_collections
from worker.jobs import JobStore
from worker.storage import Storage, check_key
from worker.usage import StoredBytes


def _upload_mark(tenant: str, image_id: str) -> str:
    return check_key(f"uploads/{tenant}/{image_id}")


def mark_uploaded(storage: Storage, tenant: str, image_id: str) -> None:
    """The tenant uploaded this image on its own: it stays until the sweep expires it, whatever else lets it go."""
    storage.put(_upload_mark(tenant, image_id), b"", "application/octet-stream")


class ImageHolds:
    def __init__(self, storage: Storage, jobs: JobStore):
        self.storage, self.jobs = storage, jobs
        self.usage = StoredBytes(jobs.redis, jobs.prefix)

    def collected(self, tenant: str) -> set[str]:
        """Ids of the images the tenant's collections list."""
        return {image_id for collection in owned_collections(self.storage, tenant) for image_id in collection.image_ids()}

    def let_go(self, tenant: str, image_ids: list[str]) -> list[str]:
        """Delete those of ``image_ids`` nothing keeps any more (after their collection went); returns them."""
        collected, in_use = self.collected(tenant), self.jobs.unfinished_inputs()
        gone = [
            image_id for image_id in dict.fromkeys(image_ids)
            if image_id not in collected and f"{tenant}/{image_id}" not in in_use
            and not self.storage.exists(_upload_mark(tenant, image_id))
        ]
        for image_id in gone:
            self.delete(tenant, image_id)
        return gone

    def delete(self, tenant: str, image_id: str) -> None:
        """Delete one image (and its upload mark) and give its bytes back (only bytes that were counted, and only once)."""
        key = check_key(f"images/{tenant}/{image_id}")  # as worker.uploads.image_key names it
        self.storage.delete(key)
        self.usage.release(tenant, [key])
        self.storage.delete(_upload_mark(tenant, image_id))
