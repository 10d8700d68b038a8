"""API keys: random tokens stored only as their SHA-256 in Redis, each with a tenant and scopes.

A token is 32 random bytes (``cl_`` + URL-safe base64), so a plain SHA-256 is
enough to store it (no salt or slow hash needed for a high-entropy secret):
the record is found by the digest of the token sent, and the token itself is
shown once, when the key is made. Scopes are levels, each including the ones
before it: ``read``; ``submit`` (inline calls, jobs, uploads); ``models``
(register and delete the tenant's own models); ``admin`` (the tenant's own
keys). The operator (the bootstrap key, and open access) alone reaches every
tenant's keys and publishes models to every tenant; no key it makes is an
operator. Some tenant names are the service's own and never given to a key.

Redis: ``convlens:apikey:<sha256>`` (a hash per key), ``convlens:apikeys``
(key id -> digest, to list and revoke).
"""

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import asdict, dataclass

import redis

SCOPES = ("read", "submit", "models", "admin")
TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
RESERVED_TENANTS = frozenset({"admin", "public", "builtin", "operator", "system", "convlens"})  # the service's own
LIMITS = ("rate_per_minute", "max_active_jobs", "max_stored_bytes", "inline_per_key")


@dataclass(frozen=True)
class ApiKey:
    id: str
    tenant: str
    scope: str  # the highest level granted
    name: str = ""
    created_at: float = 0.0
    # per-key limits; None: the settings' defaults; 0: unlimited
    rate_per_minute: int | None = None
    max_active_jobs: int | None = None
    max_stored_bytes: int | None = None
    inline_per_key: int | None = None
    operator: bool = False  # the bootstrap key or open access: every tenant's keys, publishing models

    def grants(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)

    def as_dict(self) -> dict:
        return asdict(self)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(sent: str, expected: str) -> bool:
    """Constant-time comparison of a sent token with a configured one."""
    return hmac.compare_digest(digest(sent), digest(expected))


class KeyStore:
    def __init__(self, client: redis.Redis, prefix: str = "convlens"):
        self.redis, self.prefix = client, prefix
        self.ids = f"{prefix}:apikeys"

    def _record(self, token_digest: str) -> str:
        return f"{self.prefix}:apikey:{token_digest}"

    def create(self, scope: str, tenant: str | None = None, name: str = "", **limits: int | None) -> tuple[ApiKey, str]:
        """A new key and its token (the only time the token exists outside the client).

        Without ``tenant`` the key gets a tenant of its own, named after its id.
        """
        key_id = "key_" + secrets.token_hex(8)
        token = "cl_" + secrets.token_urlsafe(32)
        key = ApiKey(key_id, tenant or key_id.replace("_", "-"), scope, name, time.time(), **limits)
        fields = {k: str(v) for k, v in key.as_dict().items() if v is not None and k != "operator"}
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self._record(digest(token)), mapping=fields)
        pipe.hset(self.ids, key_id, digest(token))
        pipe.execute()
        return key, token

    def lookup(self, token: str) -> ApiKey | None:
        raw = self.redis.hgetall(self._record(digest(token)))
        return _from_fields(raw) if raw else None

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key, or only ``tenant``'s."""
        digests = [d.decode() for d in self.redis.hvals(self.ids)]
        pipe = self.redis.pipeline()
        for token_digest in digests:
            pipe.hgetall(self._record(token_digest))
        keys = [_from_fields(raw) for raw in pipe.execute() if raw]
        return sorted((key for key in keys if tenant in (None, key.tenant)), key=lambda key: key.created_at)

    def delete(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke a key (of ``tenant``, when given) at once; False when there is no such key."""
        token_digest = self.redis.hget(self.ids, key_id)
        if token_digest is None:
            return False
        if tenant is not None and self.redis.hget(self._record(token_digest.decode()), "tenant") != tenant.encode():
            return False
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self._record(token_digest.decode()))
        pipe.hdel(self.ids, key_id)
        pipe.execute()
        return True


def _from_fields(raw: dict[bytes, bytes]) -> ApiKey:
    values = {k.decode(): v.decode() for k, v in raw.items()}
    limits = {name: int(values.pop(name)) for name in LIMITS if name in values}
    return ApiKey(created_at=float(values.pop("created_at", 0)), **values, **limits)
