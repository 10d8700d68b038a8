"""Per-key request rates and per-tenant stored bytes, counted atomically in Redis.

Requests: a fixed one-minute window per key (one Lua call: INCR, EXPIRE on
the first hit); past the limit the answer is 429 with the seconds left in the
window. Stored bytes (``stored``, :class:`worker.usage.StoredBytes`): every
object a tenant keeps (uploads, collections' images, style models) is
reserved before it is written and released when it is deleted; past the
key's limit the answer is 429 ``storage_quota_exceeded``. The
concurrent-jobs limit is checked inside the job store's create script
(:class:`worker.jobs.JobStore`). A limit of 0 means unlimited.
"""

import math
import time

import redis

from worker.usage import StoredBytes

_HIT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"""

WINDOW_SECONDS = 60


class Quotas:
    def __init__(self, client: redis.Redis, prefix: str = "convlens"):
        self.redis, self.prefix = client, prefix
        self._hit = client.register_script(_HIT)
        self.stored = StoredBytes(client, prefix)

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
