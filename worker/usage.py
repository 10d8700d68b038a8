"""A tenant's stored bytes: one Redis counter and a ledger of the stored objects it counts.

Everything a tenant keeps stored costs its quota: uploaded images, the images
of its collections (inflated, when they came in a zip) and its style models'
files. An object is counted once, by its storage key, when it is first
written, and given back once, when it is deleted; the ledger (a hash of
storage key -> bytes) makes both idempotent, so an image that an upload and a
collection share (one object: images are content-addressed) is neither counted
twice nor released twice, whoever deletes it. Reserving several objects is all
or nothing (one Lua call), so a refused collection stores nothing. A limit of
0 counts nothing (unlimited).
"""

from collections.abc import Callable, Iterable
from typing import TypeVar

import redis

from worker.storage import Storage

T = TypeVar("T")

_RESERVE = """
local wanted = 0
for i, key in ipairs(ARGV) do
  if i > 1 and i % 2 == 0 and redis.call('HEXISTS', KEYS[2], key) == 0 then wanted = wanted + tonumber(ARGV[i + 1]) end
end
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + wanted > tonumber(ARGV[1]) then return -1 end
for i = 2, #ARGV, 2 do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[i + 1]) end
end
return used + wanted
"""

_RELEASE = """
local freed = 0
for _, key in ipairs(ARGV) do
  local size = redis.call('HGET', KEYS[2], key)
  if size then
    redis.call('HDEL', KEYS[2], key)
    freed = freed + tonumber(size)
  end
end
local left = redis.call('DECRBY', KEYS[1], freed)
if left < 0 then redis.call('SET', KEYS[1], 0) return 0 end
return left
"""


class StorageQuotaExceeded(Exception):
    """Storing this would pass the bytes the tenant may keep stored."""

    def __init__(self, limit: int, wanted: int):
        super().__init__(f"storing these {wanted} bytes would pass the {limit} bytes this key may keep stored (images, "
                         "collections and style models together); delete some, or ask for a larger quota")
        self.limit, self.wanted = limit, wanted


def stored_bytes_key(prefix: str, tenant: str) -> str:
    return f"{prefix}:usage:{tenant}:stored_bytes"


class StoredBytes:
    def __init__(self, client: redis.Redis, prefix: str = "convlens"):
        self.redis, self.prefix = client, prefix
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)

    def _keys(self, tenant: str) -> list[str]:
        return [stored_bytes_key(self.prefix, tenant), f"{self.prefix}:usage:{tenant}:stored_objects"]

    def used(self, tenant: str) -> int:
        return int(self.redis.get(self._keys(tenant)[0]) or 0)

    def reserve(self, tenant: str, objects: dict[str, int], limit: int) -> bool:
        """Count ``objects`` (storage key -> bytes) not counted yet, all or none; False when that would pass ``limit``."""
        if limit <= 0 or not objects:
            return True
        args = [limit, *(part for key, size in objects.items() for part in (key, size))]
        return self._reserve(keys=self._keys(tenant), args=args) >= 0

    def release(self, tenant: str, keys: Iterable[str]) -> None:
        """Give back the bytes of these objects (deleted, or never written); those not counted give nothing."""
        keys = list(keys)
        if keys:
            self._release(keys=self._keys(tenant), args=keys)

    def store_within(self, storage: Storage, tenant: str, limit: int, objects: dict[str, int], write: Callable[[], T]) -> T:
        """Reserve the bytes of those ``objects`` not stored yet, then ``write`` them; StorageQuotaExceeded when over ``limit``.

        Objects already stored cost nothing more. When ``write`` fails (storage
        down), the reservation is given back whole: what it stored half way is
        left uncounted, never counted for ever (the retention sweep deletes it).
        """
        new = {key: size for key, size in objects.items() if not storage.exists(key)}
        if not self.reserve(tenant, new, limit):
            raise StorageQuotaExceeded(limit, sum(new.values()))
        try:
            return write()
        except BaseException:
            if limit > 0:
                self.release(tenant, new)
            raise
