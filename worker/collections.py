"""Collections: named, ordered sets of uploaded images, owned by a tenant.

A collection's record (``collections/<tenant>/<id>.json``) lists its images by
their content-hash ids (the pictures themselves live once in the image store,
``worker.uploads``), so its ``content_hash`` changes exactly when its images
do, and everything derived from it (embeddings) is keyed by that hash. Every
call takes the tenant: another tenant's id is simply not found. A new or
grown collection is validated whole (count, bytes, pixels, every picture
decodes) and its new pictures' bytes reserved in the tenant's stored-bytes
quota (:mod:`worker.usage`) before anything is stored, so a refused upload
leaves nothing behind; two changes of one collection are made one after the
other, so neither is lost. Its pictures live as long as it holds them
(:mod:`worker.image_holds`). The built-in ``samples`` collection is shared
read-only by every tenant.
"""

import hashlib
import json
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field

from engine.decoding import decode_image
from worker.storage import ObjectNotFound, Storage
from worker.tenancy import TenantIndex
from worker.uploads import SHARED, content_id, image_key, store_image
from worker.usage import StoredBytes
from worker.zip_images import ZipLimits, ZipRejected, is_zip, read_zip

BUILTIN = SHARED  # the owner of collections (and their images) every tenant can read
LOCK_STRIPES = 64  # collections changed at once without waiting on each other (a fixed number of locks, however many collections)
SAMPLES = "samples"


class UnknownCollection(Exception):
    def __init__(self, collection_id: str):
        super().__init__(f"unknown collection {collection_id!r}")
        self.collection_id = collection_id


class CollectionRejected(Exception):
    """A refused upload or change: ``status`` and ``code`` say how to answer."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


@dataclass(frozen=True)
class CollectionLimits:
    max_images: int
    max_bytes: int  # all files of one collection together
    max_pixels: int  # all pictures of one collection together
    max_image_pixels: int  # one picture


@dataclass
class Member:
    id: str
    name: str
    width: int
    height: int
    bytes: int


@dataclass
class Collection:
    id: str
    name: str
    owner: str
    images: list[Member] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256("\n".join(m.id for m in self.images).encode()).hexdigest()[:32]

    @property
    def builtin(self) -> bool:
        return self.owner == BUILTIN

    def image_ids(self) -> list[str]:
        return [m.id for m in self.images]

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "name": self.name, "owner": self.owner, "created_at": self.created_at,
                           "images": [asdict(m) for m in self.images]}).encode()  # fmt: skip

    @classmethod
    def from_json(cls, raw: bytes) -> "Collection":
        doc = json.loads(raw)
        return cls(doc["id"], doc["name"], doc["owner"], [Member(**m) for m in doc["images"]], doc["created_at"])


def _valid_id(collection_id: str) -> bool:
    return collection_id == SAMPLES or (len(collection_id) == 24 and all(c in "0123456789abcdef" for c in collection_id))


def owned_collections(storage: Storage, owner: str) -> "list[Collection]":
    """The collections ``owner`` made (not the built-in ones it can read)."""
    index, found = TenantIndex(storage, "collections"), []
    for collection_id in index.ids(owner):
        try:
            found.append(Collection.from_json(storage.get(index.key(owner, collection_id, "json"))))
        except ObjectNotFound:
            continue  # deleted between the index read and this one
    return found


class CollectionStore:
    def __init__(self, storage: Storage, limits: CollectionLimits, usage: StoredBytes | None = None):
        """``usage``: the tenants' stored-bytes counters (None: nothing is counted, as for the built-in samples)."""
        self.storage, self.limits, self.usage = storage, limits, usage
        self.index = TenantIndex(storage, "collections")
        self._locks = [threading.Lock() for _ in range(LOCK_STRIPES)]

    # -- reading ------------------------------------------------------------------------

    def _key(self, owner: str, collection_id: str) -> str:
        return self.index.key(owner, collection_id, "json")

    def get(self, tenant: str, collection_id: str) -> Collection:
        if not _valid_id(collection_id):
            raise UnknownCollection(collection_id)
        for owner in (tenant, BUILTIN):
            try:
                return Collection.from_json(self.storage.get(self._key(owner, collection_id)))
            except ObjectNotFound:
                continue
        raise UnknownCollection(collection_id)

    # -- changing -----------------------------------------------------------------------

    def create(self, tenant: str, name: str, files: list[tuple[str, bytes]], collection_id: str | None = None,
               max_stored_bytes: int = 0) -> Collection:
        """A new collection of ``files``; StorageQuotaExceeded when its new pictures would pass ``max_stored_bytes`` (> 0)."""
        collection = Collection(collection_id or secrets.token_hex(12), name or "untitled", tenant)
        self._grow(collection, files, max_stored_bytes)
        self.storage.put(self._key(tenant, collection.id), collection.to_json(), "application/json")
        self.index.add(tenant, collection.id)
        return collection

    def add(self, tenant: str, collection_id: str, files: list[tuple[str, bytes]], max_stored_bytes: int = 0) -> Collection:
        with self._changing(tenant, collection_id):
            collection = self._own(tenant, collection_id)
            self._grow(collection, files, max_stored_bytes)
            self.storage.put(self._key(tenant, collection.id), collection.to_json(), "application/json")
        return collection

    def delete(self, tenant: str, collection_id: str) -> Collection:
        """Removes the record and returns it; its images are the caller's to let go (:func:`worker.image_holds.ImageHolds.let_go`)."""
        with self._changing(tenant, collection_id):
            collection = self._own(tenant, collection_id)
            self.storage.delete(self._key(tenant, collection.id))
            self.index.remove(tenant, collection.id)
        return collection

    def _changing(self, tenant: str, collection_id: str) -> threading.Lock:
        """The lock under which one collection's record is read, changed and written back, so that two adds (or an add
        and a delete) at once do not lose each other's change; a process lock, as :class:`worker.tenancy.TenantIndex`'s."""
        return self._locks[hash((tenant, collection_id)) % LOCK_STRIPES]

    def _own(self, tenant: str, collection_id: str) -> Collection:
        collection = self.get(tenant, collection_id)
        if collection.owner != tenant:
            raise CollectionRejected(409, "read_only_collection", f"collection {collection_id!r} is built in and cannot be changed")
        return collection

    def _grow(self, collection: Collection, files: list[tuple[str, bytes]], max_stored_bytes: int) -> None:
        """Validate ``files`` (plain pictures or zips of them) against the limits, then store the new pictures within the quota."""
        limits = self.limits
        entries = expand_zips(files, ZipLimits(limits.max_images, limits.max_bytes))
        if not entries:
            raise CollectionRejected(400, "no_images", "the upload holds no images")
        known = set(collection.image_ids())
        count, total_bytes = len(collection.images), sum(m.bytes for m in collection.images)
        total_pixels = sum(m.width * m.height for m in collection.images)
        new: list[tuple[Member, bytes]] = []
        for name, data in entries:
            image = decode_image(data, limits.max_image_pixels, name)  # ImageRejected names the entry
            member = Member(content_id(data), name, image.width, image.height, len(data))
            if member.id in known:
                continue  # the same picture twice is one member
            known.add(member.id)
            count, total_bytes, total_pixels = count + 1, total_bytes + len(data), total_pixels + image.width * image.height
            if count > limits.max_images:
                raise CollectionRejected(413, "too_many_images", f"a collection holds at most {limits.max_images} images")
            if total_bytes > limits.max_bytes:
                raise CollectionRejected(413, "collection_too_large", f"a collection holds at most {limits.max_bytes} bytes of images")
            if total_pixels > limits.max_pixels:
                raise CollectionRejected(413, "collection_too_large", f"a collection holds at most {limits.max_pixels} pixels in all")
            new.append((member, data))

        def store() -> None:
            for member, data in new:
                store_image(self.storage, data, limits.max_image_pixels, collection.owner)
                collection.images.append(member)

        if self.usage is None:
            store()
        else:
            pictures = {image_key(member.id, collection.owner): member.bytes for member, _data in new}
            self.usage.store_within(self.storage, collection.owner, max_stored_bytes, pictures, store)

    def list(self, tenant: str) -> "list[Collection]":  # last in the class: it shadows the builtin name
        return owned_collections(self.storage, BUILTIN) + owned_collections(self.storage, tenant)


def expand_zips(files: list[tuple[str, bytes]], limits: ZipLimits) -> list[tuple[str, bytes]]:
    """Every zip among ``files`` replaced by its entries (named ``<zip>/<entry>``)."""
    entries = []
    for name, data in files:
        if is_zip(data):
            try:
                entries += [(f"{name}/{entry}", content) for entry, content in read_zip(data, limits)]
            except ZipRejected as exc:
                raise CollectionRejected(exc.status, exc.code, exc.message, **({"entry": exc.entry} if exc.entry else {})) from None
        else:
            entries.append((name, data))
    return entries
