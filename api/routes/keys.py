"""API keys (admin scope): make one (its token is shown once), list them, revoke one."""

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import KeyStoreDep, require_scope
from worker.broker import broker_errors
from api.keys import SCOPES, TENANT
from api.problems import Problem

router = APIRouter(prefix="/v1", tags=["keys"], dependencies=[Depends(require_scope("admin"))])


class KeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal[SCOPES] = Field(description="read < submit < admin: each includes the ones before it")
    name: str = Field("", max_length=200, description="what the key is for")
    tenant: str | None = Field(
        None, pattern=TENANT.pattern, description="the tenant it acts for (share one between keys); default: a new tenant of its own"
    )
    rate_per_minute: int | None = Field(None, ge=0, description="requests per minute (0: unlimited; default: the service's)")
    max_active_jobs: int | None = Field(None, ge=0, description="queued + running jobs of its tenant (0: unlimited)")
    max_stored_bytes: int | None = Field(None, ge=0, description="uploaded bytes its tenant keeps (0: unlimited)")


KEY_EXAMPLES = {
    "submit": {"summary": "a key that submits jobs for a new tenant", "value": {"scope": "submit", "name": "batch jobs"}},
    "shared": {"summary": "a read-only key of an existing tenant, 60 requests a minute",
               "value": {"scope": "read", "name": "dashboard", "tenant": "acme", "rate_per_minute": 60}},
}


@router.post("/keys", status_code=201, summary="Make an API key; the answer holds its token, shown only this once")
def create_key(request: Annotated[KeyRequest, Body(openapi_examples=KEY_EXAMPLES)], keys: KeyStoreDep, response: Response) -> dict:
    with broker_errors():
        key, token = keys.create(**request.model_dump())
    response.headers["Location"] = f"/v1/keys/{key.id}"
    return {**key.as_dict(), "key": token}


@router.get("/keys", summary="Every API key (never their tokens)")
def list_keys(keys: KeyStoreDep) -> dict:
    with broker_errors():
        return {"keys": [key.as_dict() for key in keys.list()]}


@router.delete("/keys/{key_id}", status_code=204, summary="Revoke an API key at once")
def delete_key(key_id: str, keys: KeyStoreDep) -> Response:
    with broker_errors():
        deleted = keys.delete(key_id)
    if not deleted:
        raise Problem(404, "unknown_key", f"no API key {key_id!r}")
    return Response(status_code=204)
