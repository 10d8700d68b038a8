"""API keys (admin scope): make one (its token is shown once), list them, revoke one.

A tenant's admin key reaches its own tenant's keys only, and makes no key
with looser limits than its own; the operator's key reaches every tenant.
"""

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.deps import KeyDep, KeyStoreDep, SettingsDep, key_limit, require_scope
from api.keys import LIMITS, RESERVED_TENANTS, SCOPES, TENANT, ApiKey
from api.problems import Problem
from api.settings import Settings
from worker.broker import broker_errors

router = APIRouter(prefix="/v1", tags=["keys"], dependencies=[Depends(require_scope("admin"))])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal[SCOPES] = Field(description="read < submit < models < admin: each includes the ones before it")
    name: str = Field("", max_length=200, description="what the key is for")
    tenant: str | None = Field(
        None, pattern=TENANT.pattern, description="the tenant it acts for (share one between keys); default: the maker's own "
        "tenant, or for the operator a new tenant of its own"
    )
    rate_per_minute: int | None = Field(None, ge=0, description="requests per minute (0: unlimited; default: the service's)")
    max_active_jobs: int | None = Field(None, ge=0, description="queued + running jobs of its tenant (0: unlimited)")
    max_stored_bytes: int | None = Field(None, ge=0, description="bytes its tenant keeps stored: images, collections, style models (0: unlimited)")
    inline_per_key: int | None = Field(None, ge=0, description="inline calls it may have running or waiting at once (0: unlimited)")

    @field_validator("tenant")
    @classmethod
    def _not_reserved(cls, tenant: str | None) -> str | None:
        if tenant in RESERVED_TENANTS:
            raise ValueError(f"the tenant names {', '.join(sorted(RESERVED_TENANTS))} are the service's own")
        return tenant


KEY_EXAMPLES = {
    "submit": {"summary": "a key that submits jobs", "value": {"scope": "submit", "name": "batch jobs"}},
    "shared": {"summary": "a read-only key, 60 requests a minute",
               "value": {"scope": "read", "name": "dashboard", "rate_per_minute": 60}},
}


@router.post("/keys", status_code=201, summary="Make an API key; the answer holds its token, shown only this once")
def create_key(request: Annotated[KeyRequest, Body(openapi_examples=KEY_EXAMPLES)], keys: KeyStoreDep, maker: KeyDep,
               settings: SettingsDep, response: Response) -> dict:
    fields = request.model_dump()
    if not maker.operator:
        if request.tenant not in (None, maker.tenant):
            raise Problem(403, "foreign_tenant", f"this key makes keys of its own tenant {maker.tenant!r} only")
        fields["tenant"] = maker.tenant
        for name in LIMITS:
            fields[name] = _bounded(name, fields[name], maker, settings)
    with broker_errors():
        key, token = keys.create(**fields)
    response.headers["Location"] = f"/v1/keys/{key.id}"
    return {**key.as_dict(), "key": token}


def _bounded(name: str, asked: int | None, maker: ApiKey, settings: Settings) -> int | None:
    """A tenant's admin gives no key a looser limit than its own (0 is unlimited)."""
    own = key_limit(maker, settings, name)
    if own == 0 or (asked is not None and 0 < asked <= own):
        return asked
    if asked is None:
        return own
    raise Problem(403, "limit_above_own", f"{name} {asked} is looser than this key's own ({own}); ask the operator")


@router.get("/keys", summary="Every API key of this tenant (all tenants' for the operator), never their tokens")
def list_keys(keys: KeyStoreDep, key: KeyDep) -> dict:
    with broker_errors():
        return {"keys": [found.as_dict() for found in keys.list(None if key.operator else key.tenant)]}


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key at once")
def delete_key(key_id: str, keys: KeyStoreDep, key: KeyDep) -> Response:
    with broker_errors():
        deleted = keys.delete(key_id, None if key.operator else key.tenant)
    if not deleted:
        raise Problem(404, "unknown_key", f"no API key {key_id!r}")
    return Response(status_code=204)
