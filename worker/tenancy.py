"""Per-tenant storage layout shared by the tenant-owned resource stores (collections, style models).

Each resource kind keeps ``<kind>/<tenant segment>/<id>.<ext>`` objects and one
``index.json`` of ids per tenant (the storage interface has no listing); the
tenant name becomes a fixed-length hash segment, so any tenant name is a safe key.
"""

import hashlib
import json
import threading

from worker.storage import ObjectNotFound, Storage


def tenant_segment(tenant: str) -> str:
    return "t" + hashlib.sha256(tenant.encode()).hexdigest()[:24]


class TenantIndex:
    """The ids one tenant owns of one resource kind (read-modify-write under a process lock)."""

    def __init__(self, storage: Storage, kind: str):
        self.storage, self.kind = storage, kind
        self._lock = threading.Lock()

    def key(self, owner: str, resource_id: str, ext: str) -> str:
        return f"{self.kind}/{tenant_segment(owner)}/{resource_id}.{ext}"

    def ids(self, owner: str) -> list[str]:
        try:
            return json.loads(self.storage.get(f"{self.kind}/{tenant_segment(owner)}/index.json"))
        except ObjectNotFound:
            return []

    def add(self, owner: str, resource_id: str) -> None:
        with self._lock:
            ids = [i for i in self.ids(owner) if i != resource_id]
            self._write(owner, [*ids, resource_id])

    def remove(self, owner: str, resource_id: str) -> None:
        with self._lock:
            self._write(owner, [i for i in self.ids(owner) if i != resource_id])

    def _write(self, owner: str, ids: list[str]) -> None:
        self.storage.put(f"{self.kind}/{tenant_segment(owner)}/index.json", json.dumps(ids).encode(), "application/json")
