"""A tenant's stored upload bytes: one Redis counter, raised by the API's upload quota and lowered by the
retention sweep when it deletes an upload, never below zero."""

import redis

_RELEASE = """
local left = redis.call('DECRBY', KEYS[1], ARGV[1])
if left < 0 then redis.call('SET', KEYS[1], 0) return 0 end
return left
"""


def stored_bytes_key(prefix: str, tenant: str) -> str:
    return f"{prefix}:usage:{tenant}:stored_bytes"


def release_stored_bytes(client: redis.Redis, prefix: str, tenant: str, size: int) -> None:
    client.eval(_RELEASE, 1, stored_bytes_key(prefix, tenant), size)
