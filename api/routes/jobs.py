"""Jobs: submit a method run, follow it (poll or SSE), cancel it, download its artifacts."""

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import CollectionsDep, EventStreamsDep, JobsDep, KeyDep, QuotasDep, SettingsDep, TenantDep, key_limit, require_scope
from api.image_uploads import store_upload
from api.job_schemas import JobRequest
from api.picture_refs import CollectionRef, slot_pictures
from api.job_wait import close_subscription, preferred_wait, wait_finished
from api.json_response import FiniteJSONResponse, finite_json
from api.problems import Problem, invalid_request
from api.keys import ApiKey
from api.settings import Settings
from api.quotas import Quotas
from engine.decoding import decode_base64
from engine.errors import UnknownMethod
from engine.registry import get_method
from worker.collections import CollectionStore
from worker.jobs import STATES, Job
from api.job_service import JobService
from worker.broker import BROKER_ERRORS
from worker.storage import ObjectNotFound, Storage

router = APIRouter(prefix="/v1", tags=["jobs"])

JOB = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobOut"}}}}


def _iso(moment: float | None) -> str | None:
    return datetime.fromtimestamp(moment, timezone.utc).isoformat() if moment is not None else None


def job_body(job: Job, storage: Storage, queue: dict | None = None) -> dict:
    """The job as the API answers it; ``queue``: a queued job's position and estimated wait (None elsewhere)."""
    base = f"/v1/jobs/{job.id}"
    progress = dict(job.progress) if job.progress else None
    if progress and "preview_step" in progress:
        progress["preview_url"] = f"{base}/preview?step={progress['preview_step']}"
    artifacts = [
        {
            "name": item["name"],
            "kind": item["kind"],
            "media_type": item["media_type"],
            "bytes": item["bytes"],
            "main": item["main"],
            "url": f"{base}/artifacts/{item['name']}",
            "download_url": storage.presigned_url(item["key"]),
        }
        for item in job.artifacts
    ]
    return {
        "id": job.id,
        "state": job.state,
        "method": job.method,
        "model": job.model,
        "params": job.params,
        "inputs": job.inputs,
        "content_hash": job.content_hash,
        "request_id": job.request_id,
        "deliveries": job.deliveries,
        "worker": job.worker,
        "cancel_requested": job.cancel_requested,
        "cancel_requested_at": _iso(job.cancel_requested_at),
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "deadline_at": _iso(job.deadline_at),
        "webhook": job.webhook,
        "progress": progress,
        "queue": queue if job.state == "queued" else None,
        "error": job.error,
        "artifacts": artifacts,
        "result": job.result,
        "links": {"self": base, "events": f"{base}/events"},
    }


def _found(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise Problem(404, "unknown_job", f"no job {job_id!r} (it never existed or has expired)")
    return job


@router.post(
    "/jobs",
    status_code=202,
    summary="Submit a job; identical submissions share one job",
    description="The body names the method and carries its inputs (uploaded image ids, or `{\"collection\": id}` "
    "for all of a collection's images) and params; "
    "its schema is one per method, told apart by `method`. `Prefer: wait=N` holds the request up to N seconds "
    "(at most `max_wait_seconds`) and answers 200 with the finished job if it finished in time, else 202 as usual; "
    "a wait takes one of the tenant's `max_event_streams` places, and when they are all held it is skipped "
    "(no `Preference-Applied`) and the job answered at once. "
    "`deadline_seconds`: a job not started that long after submission ends `aborted`. `webhook`: its events "
    "are POSTed to a URL, signed (Standard Webhooks).",
    response_model=None,
    response_class=FiniteJSONResponse,
    responses={
        200: {"description": "finished: an identical job already succeeded, or it finished within `Prefer: wait`", **JOB},
        202: {"description": "queued or running; follow Location", **JOB},
    },
    dependencies=[Depends(require_scope("submit"))],
)
async def submit_job(
    request: Request,
    service: JobsDep,
    settings: SettingsDep,
    collections: CollectionsDep,
    quotas: QuotasDep,
    key: KeyDep,
    streams: EventStreamsDep,
    response: Response,
    prefer: Annotated[str | None, Header(description="`wait=N`: hold the answer up to N seconds for the job to finish")] = None,
) -> dict:
    body = parse_job_request(await request.body())
    job, _created = await run_in_threadpool(_submit, service, settings, collections, quotas, key, body, getattr(request.state, "request_id", None))
    wait = preferred_wait(prefer, settings.max_wait_seconds)
    if wait is not None:
        # a wait holds a Redis subscription as a stream does, so it takes a place of the tenant's
        # streams; past the cap the preference is ignored (RFC 7240) and the job answered as it stands
        with streams.place(key.tenant) as held:
            if held:
                job = await wait_finished(service, job, wait)
                response.headers["Preference-Applied"] = f"wait={wait:g}"
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    if job.finished:
        response.status_code = 200
    else:
        response.headers["Retry-After"] = str(settings.retry_after_seconds)
    return job_body(job, service.storage, await run_in_threadpool(service.queue_info, job))


def _submit(service: JobService, settings: Settings, collections: CollectionStore, quotas: Quotas, key: ApiKey, body: JobRequest,
            request_id: str | None):
    """Name every picture by a stored image's id, and submit (storage and Redis I/O: run in the threadpool)."""
    inputs, names = _stored_inputs(service, settings, collections, quotas, key, body)
    return service.submit(
        body.method, body.model, inputs, body.params, key.tenant, request_id, key_limit(key, settings, "max_active_jobs"),
        body.deadline_seconds, body.webhook.model_dump(mode="json") if body.webhook else None,
        key_limit(key, settings, "max_stored_bytes"), names,
    )


def _stored_inputs(service: JobService, settings: Settings, collections: CollectionStore, quotas: Quotas, key: ApiKey,
                   body: JobRequest) -> tuple[dict, dict[str, list[str]]]:
    """The job's inputs as image ids: a collection becomes its images, a base64 picture an upload (within the quota);
    and the collections' names for their images, by slot.

    A slot the method lacks, or a method that does not exist, is left for :func:`engine.run.prepare` to name.
    """
    try:
        slots = {slot.name: slot for slot in get_method(body.method).inputs}
    except UnknownMethod:
        return body.inputs, {}
    ids, names = {}, {}
    for name, value in body.inputs.items():
        slot = slots.get(name)
        if slot is None or value is None:
            ids[name] = value
            continue
        pictures = slot_pictures(value, name, slot.many)
        if isinstance(pictures, CollectionRef):
            members = collections.get(key.tenant, pictures.collection).images
            ids[name], names[name] = [m.id for m in members], [m.name for m in members]
            continue
        found = [p.image_id if p.base64 is None else store_upload(service, settings, key, quotas, decode_base64(p.base64, p.label))[0].id
                 for p in pictures]
        ids[name] = found if slot.many else found[0]
    return ids, names


def parse_job_request(body: bytes) -> JobRequest:
    try:
        return JobRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_request(exc) from None


@router.get(
    "/jobs",
    summary="Jobs, newest first, optionally of one state",
    response_model=None,
    response_class=FiniteJSONResponse,
    responses={200: {"description": "one page", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobPage"}}}}},
)
def list_jobs(
    service: JobsDep,
    tenant: TenantDep,
    state: Literal[STATES] | None = Query(None, description="only jobs in this state"),
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = Query(None, pattern=r"^[0-9a-f]{24}$", description="next_cursor of the previous page"),
) -> dict:
    jobs, next_cursor = service.list(tenant, state, limit, cursor)
    return {"jobs": [job_body(job, service.storage) for job in jobs], "next_cursor": next_cursor}


@router.get("/jobs/{job_id}", summary="One job: state, progress, error, artifacts", response_model=None,
            response_class=FiniteJSONResponse,
            responses={200: {"description": "the job", **JOB}})
def get_job(job_id: str, service: JobsDep, tenant: TenantDep) -> dict:
    job = _found(service.get(job_id, tenant), job_id)
    return job_body(job, service.storage, service.queue_info(job))


@router.delete(
    "/jobs/{job_id}",
    summary="Cancel a job",
    description="A queued job is cancelled at once. A running job is asked to stop at its next step (202); "
    "one still running `cancel_grace_seconds` after that first request is killed by a repeated DELETE "
    "(its worker process is terminated) and ends cancelled.",
    responses={
        200: {"description": "cancelled: it was queued (never runs), or it ignored the first request past the grace period (killed)", **JOB},
        202: {"description": "running: asked to stop at its next step; DELETE again after Retry-After seconds to kill it", **JOB},
    },
    response_model=None,
    response_class=FiniteJSONResponse,
    dependencies=[Depends(require_scope("submit"))],
)
def cancel_job(job_id: str, service: JobsDep, settings: SettingsDep, tenant: TenantDep, response: Response) -> dict:
    outcome, job = service.cancel(job_id, tenant)
    job = _found(job, job_id)
    if outcome == "requested":
        response.status_code = 202
        grace_left = job.cancel_requested_at + settings.cancel_grace_seconds - time.time()
        response.headers["Retry-After"] = str(max(1, math.ceil(grace_left)))
    elif outcome == "finished":
        raise Problem(409, "job_finished", f"job {job_id} already finished ({job.state}); nothing to cancel")
    return job_body(job, service.storage)


_BINARY = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/jobs/{job_id}/artifacts/{name}",
    summary="Download one artifact of a finished job",
    response_class=Response,
    responses={200: {"description": "a PNG image, a .npy array or the result's JSON data",
                     "content": {"image/png": _BINARY, "application/x-npy": _BINARY, "application/json": {}}}},
)
def get_artifact(job_id: str, name: str, service: JobsDep, tenant: TenantDep) -> Response:
    job = _found(service.get(job_id, tenant), job_id)
    artifact = next((item for item in job.artifacts if item["name"] == name), None)
    if artifact is None:
        raise Problem(404, "unknown_artifact", f"job {job_id} has no artifact {name!r}")
    try:
        data = service.storage.get(artifact["key"])
    except ObjectNotFound as exc:
        raise Problem(404, "unknown_artifact", f"artifact {name!r} of job {job_id} has expired") from exc
    return Response(data, media_type=artifact["media_type"], headers={"Content-Disposition": f'inline; filename="{name}"'})


@router.get(
    "/jobs/{job_id}/preview",
    summary="The latest preview image of a running synthesis job",
    response_class=Response,
    responses={200: {"description": "the latest preview", "content": {"image/png": _BINARY}}},
)
def get_preview(job_id: str, service: JobsDep, tenant: TenantDep) -> Response:
    job = _found(service.get(job_id, tenant), job_id)
    try:
        data = service.storage.get(f"previews/{job.id}.png")
    except ObjectNotFound as exc:
        raise Problem(404, "no_preview", f"job {job_id} has no preview yet") from exc
    return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.get(
    "/jobs/{job_id}/events",
    summary="Server-sent events: progress, then one final state event",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def job_events(job_id: str, service: JobsDep, settings: SettingsDep, tenant: TenantDep,
                     streams: EventStreamsDep) -> StreamingResponse:
    _found(await run_in_threadpool(service.get, job_id, tenant), job_id)
    return streams.response(
        tenant,
        _events(job_id, service, settings.sse_heartbeat_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


QUEUE_REFRESH_SECONDS = 2.0  # how often a queued job's stream looks again at its place (other jobs' changes are not published to it)


async def _events(job_id: str, service: JobService, heartbeat: float):
    """Subscribe first, then read the record, so no change between the two is missed.

    A queued job's ``progress`` events carry its ``queue`` (position, estimated wait), sent again whenever
    the position or the whole seconds of the estimate change, looked at every ``QUEUE_REFRESH_SECONDS``.
    """
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(service.settings.redis_url, socket_connect_timeout=service.settings.redis_connect_timeout)
    pubsub = client.pubsub()
    last, said = None, time.monotonic()
    try:
        await pubsub.subscribe(service.jobs.channel(job_id))
        while True:
            raw = await client.hgetall(service.jobs.key(job_id))
            if not raw:
                return
            job = Job.from_fields(raw)
            if job.finished:
                yield _sse("state", job_body(job, service.storage))
                return
            queue = await run_in_threadpool(service.jobs.queue_info, job) if job.state == "queued" else None
            place = (queue["position"], _whole(queue["estimated_wait_seconds"])) if queue else None
            snapshot = (job.state, job.progress, job.cancel_requested, place)
            if snapshot != last:
                last = snapshot
                yield _sse("progress", job_body(job, service.storage, queue))
                said = time.monotonic()
            wait = min(heartbeat, QUEUE_REFRESH_SECONDS) if queue else heartbeat
            if await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait) is None and (not queue or time.monotonic() - said >= heartbeat):
                yield ": heartbeat\n\n"
                said = time.monotonic()
    except BROKER_ERRORS:
        yield _sse("error", {"code": "broker_unavailable", "detail": "the job queue became unreachable; reconnect later"})
    finally:
        await asyncio.shield(close_subscription(pubsub, client))


def _whole(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {finite_json(data).decode()}\n\n"
