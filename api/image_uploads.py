"""Storing an uploaded picture within its tenant's quota: POST /v1/images, and a job's base64 pictures."""

from worker.broker import broker_errors
from worker.image_holds import mark_uploaded
from worker.uploads import StoredImage, content_id, image_key, store_image
from api.deps import key_limit


def store_upload(service, settings, key, quotas, data: bytes) -> tuple[StoredImage, bool]:
    """Store the upload if its bytes fit the tenant's quota (StorageQuotaExceeded), marked as an upload of its own.

    A re-upload of bytes the tenant already stored costs nothing, even when its quota is full.
    """
    objects = {image_key(content_id(data), key.tenant): len(data)}
    with broker_errors():
        stored, created = quotas.stored.store_within(service.storage, key.tenant, key_limit(key, settings, "max_stored_bytes"), objects,
                                                     lambda: store_image(service.storage, data, settings.max_image_pixels, key.tenant))
    mark_uploaded(service.storage, key.tenant, stored.id)
    return stored, created
