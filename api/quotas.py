"""Per-key request rates and per-tenant stored bytes, counted atomically in Redis.

Requests: a fixed one-minute window per key (one Lua call: INCR, EXPIRE on
the first hit); past the limit the answer is 429 with the seconds left in the
window. Stored bytes: a counter per tenant, reserved before an upload is
written (one Lua call: refuse if it would pass the limit, else INCRBY) and
released when the upload turned out to be stored already or failed, and by
the retention sweep when it deletes an upload (:mod:`worker.usage`); with no
limit nothing is counted. The
concurrent-jobs limit is checked inside the job store's create script
(:class:`worker.jobs.JobStore`). A limit of 0 means unlimited.
"""

import math
import time

import redis

from worker.usage import release_stored_bytes, stored_bytes_key

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if used + wanted > tonumber(ARGV[2]) then return -1 end
return redis.call('INCRBY', KEYS[1], wanted)
"""

WINDOW_SECONDS = 60


class Quotas:
    def __init__(self, client: redis.Redis, prefix: str = "convlens"):
        self.redis, self.prefix = client, prefix
        self._hit = client.register_script(_HIT)
        self._reserve = client.register_script(_RESERVE)

    def stored_key(self, tenant: str) -> str:
        return stored_bytes_key(self.prefix, tenant)

    def hit(self, key_id: str, per_minute: int, now: float | None = None) -> int | None:
        """Count one request; None when allowed, else the seconds until the window resets."""
        if per_minute <= 0:
            return None
        now = time.time() if now is None else now
        window = int(now // WINDOW_SECONDS)
        count = self._hit(keys=[f"{self.prefix}:rate:{key_id}:{window}"], args=[WINDOW_SECONDS + 1])
        if count <= per_minute:
            return None
        return max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))

    def reserve_bytes(self, tenant: str, size: int, limit: int) -> bool:
        """Reserve ``size`` stored bytes for the tenant; False when that would pass ``limit`` (> 0)."""
        return self._reserve(keys=[self.stored_key(tenant)], args=[size, limit]) >= 0

    def release_bytes(self, tenant: str, size: int) -> None:
        release_stored_bytes(self.redis, self.prefix, tenant, size)

    def stored_bytes(self, tenant: str) -> int:
        return int(self.redis.get(self.stored_key(tenant)) or 0)
