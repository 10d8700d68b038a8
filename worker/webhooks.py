"""Webhooks: a job's events POSTed to the URL it named, in order, signed the Standard Webhooks way.

An event is pushed onto its job's outbox (a Redis list, oldest first) and a
Celery task on the ``webhooks`` queue is sent with the job id, so a slow or
failing receiver never holds up a job's worker. The task drains that job's
outbox head first under the job's lock (``SET NX`` with an expiry, refreshed
per item), so a job's deliveries arrive one at a time in the order the events
happened (started, progress..., completed) while other jobs deliver in
parallel. A task that finds the lock taken tries again once the lock would
have expired (the holder drains what was pushed meanwhile; a crashed holder
strands nothing). A failed head stays the head, with its attempt count and a
"not before" time: attempt n+1 waits ``base * 2**(n-1)`` seconds, with the
same ``webhook-id`` every attempt (receivers can drop duplicates), up to
``webhook_max_attempts``; a refused target or a delivery given up on is
dropped so later events follow. Headers (https://www.standardwebhooks.com/):

- ``webhook-id``: the delivery's id; ``webhook-timestamp``: Unix seconds;
- ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")).

Targets are checked when the job is submitted and again before every attempt
(a name may resolve elsewhere later): loopback, private, link-local and other
non-global addresses are refused unless ``webhook_allow_private`` is set, so a
caller cannot make the service probe its own network (SSRF).
"""

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from datetime import datetime, timezone
from functools import cached_property
from urllib.parse import urlsplit

import httpx
import pydantic_core
import redis
from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from worker.jobs import REDIS_ERRORS, Job, JobStore, connect
from worker.settings import Settings

TASK_NAME = "convlens.deliver_webhook"
QUEUE = "webhooks"
EVENTS = {"start": "job.started", "progress": "job.progress", "completed": "job.completed"}
log = logging.getLogger(__name__)


class WebhookRefused(Exception):
    """A webhook the service will not deliver to (bad target, or webhooks not configured)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def secret_key(secret: str) -> bytes:
    """The HMAC key: a ``whsec_``-prefixed secret is base64, any other is its UTF-8 text."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(secret_key(secret), signed, hashlib.sha256).digest()).decode()


def check_target(url: str, allow_private: bool) -> None:
    """Refuse URLs whose host resolves to a non-public address (unless allowed)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused("webhook_refused", f"webhook URL {url!r} must be http(s) with a host")
    if allow_private:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)}
    except OSError as exc:
        raise WebhookRefused("webhook_refused", f"webhook host {parts.hostname!r} does not resolve ({exc})") from None
    for address in addresses:
        if not ipaddress.ip_address(address.split("%")[0]).is_global:
            raise WebhookRefused(
                "webhook_refused", f"webhook host {parts.hostname!r} resolves to a non-public address ({address})"
            )


def check_request(webhook: dict | None, settings) -> None:
    """At submission: webhooks configured, target allowed."""
    if webhook is None:
        return
    if not settings.webhook_secret:
        raise WebhookRefused("webhooks_not_configured", "this service has no webhook secret set; jobs may not name a webhook")
    check_target(webhook["url"], settings.webhook_allow_private)


def payload(job: Job, event: str) -> dict:
    """What a delivery says: the event and the job's state (artifacts as API paths)."""
    base = f"/v1/jobs/{job.id}"
    return {
        "type": EVENTS[event],
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "data": {
            "id": job.id,
            "state": job.state,
            "method": job.method,
            "model": job.model,
            "progress": job.progress,
            "error": job.error,
            "result": job.result,
            "artifacts": [
                {"name": item["name"], "media_type": item["media_type"], "url": f"{base}/artifacts/{item['name']}"}
                for item in job.artifacts
            ],
            "links": {"self": base, "events": f"{base}/events"},
        },
    }


def wants(job: Job | None, event: str) -> bool:
    return job is not None and bool(job.webhook) and event in job.webhook.get("events", ())


# The lock must still be ours: drop the head (ARGV[3] empty) or replace it, if it is still ARGV[2]; refresh the lock.
_SETTLE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return -1 end
if redis.call('LINDEX', KEYS[1], 0) == ARGV[2] then
  if ARGV[3] == '' then redis.call('LPOP', KEYS[1]) else redis.call('LSET', KEYS[1], 0, ARGV[3]) end
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return redis.call('LLEN', KEYS[1])
"""

_UNLOCK = """
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return redis.call('LLEN', KEYS[1])
"""


class Outbox:
    """Each job's pending deliveries, oldest first (one Redis list per job), and the lock of whoever delivers them.

    An entry is ``{"id", "url", "body", "attempts", "not_before"}``: its
    ``webhook-id``, where and what to POST, the attempts failed so far and the
    Unix time before which it is not tried again.
    """

    def __init__(self, client: redis.Redis, prefix: str = "convlens"):
        self.redis, self.prefix = client, prefix
        self._settle = client.register_script(_SETTLE)
        self._unlock = client.register_script(_UNLOCK)

    def keys(self, job_id: str) -> list[str]:
        """The job's list and its lock."""
        key = f"{self.prefix}:webhooks:{job_id}"
        return [key, f"{key}:lock"]

    def push(self, job_id: str, entry: dict, ttl_seconds: int) -> None:
        key = self.keys(job_id)[0]
        self.redis.pipeline().rpush(key, json.dumps(entry)).expire(key, ttl_seconds).execute()

    def head(self, job_id: str) -> tuple[bytes, dict] | None:
        """The oldest entry, as stored and decoded."""
        raw = self.redis.lindex(self.keys(job_id)[0], 0)
        return None if raw is None else (raw, json.loads(raw))

    def lock(self, job_id: str, token: str, seconds: float) -> bool:
        return bool(self.redis.set(self.keys(job_id)[1], token, nx=True, px=int(seconds * 1000)))

    def settle(self, job_id: str, token: str, raw: bytes, entry: dict | None, seconds: float) -> bool:
        """Drop the head ``raw`` (``entry`` None) or store ``entry`` in its place; False when the lock is no longer ours."""
        return self._settle(keys=self.keys(job_id), args=[token, raw, json.dumps(entry) if entry else "", int(seconds * 1000)]) >= 0

    def unlock(self, job_id: str, token: str) -> int:
        """Release the lock if it is still ours; the entries left."""
        return self._unlock(keys=self.keys(job_id), args=[token])

    def retry_after(self, job_id: str) -> float | None:
        """For a task that found the lock taken: seconds until it expires, or None when nothing is left to deliver."""
        pipe = self.redis.pipeline()
        left, ms = pipe.llen(self.keys(job_id)[0]).pttl(self.keys(job_id)[1]).execute()
        return max(ms, 0) / 1000 + 0.1 if left else None  # just after it expires


def new_entry(message_id: str, url: str, body: str) -> dict:
    """An outbox entry not yet attempted (see :class:`Outbox`)."""
    return {"id": message_id, "url": url, "body": body, "attempts": 0, "not_before": 0}


def enqueue(celery, jobs: JobStore, job: Job | None, event: str) -> None:
    """Push ``event`` onto ``job``'s outbox and send the task that delivers it, when the job asked for it.

    Never raises but for the job's soft time limit: a job outlives its hooks.
    """
    if not wants(job, event):
        return
    body = pydantic_core.to_json(payload(job, event), inf_nan_mode="null").decode()  # JSON has no NaN
    entry = new_entry(f"msg_{secrets.token_hex(12)}", job.webhook["url"], body)
    try:
        Outbox(jobs.redis, jobs.prefix).push(job.id, entry, jobs.ttl)
        celery.send_task(TASK_NAME, args=[job.id], queue=QUEUE)
    except SoftTimeLimitExceeded:  # the job's time limit struck here: it ends the job, not this event
        raise
    except Exception:  # Redis or the broker is down: this event is lost (or goes with the job's next one), the job is not
        log.exception("could not queue the %s webhook of job %s", event, job.id)


def deliver(settings: Settings, url: str, message_id: str, body: str) -> None:
    """One attempt, over within ``webhook_timeout_seconds``; raises unless the receiver answered 2xx (its body unread)."""
    check_target(url, settings.webhook_allow_private)
    timestamp = int(time.time())
    data = body.encode()
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(settings.webhook_secret, message_id, timestamp, data),
    }
    seconds = settings.webhook_timeout_seconds
    try:
        asyncio.run(_post(url, data, headers, seconds))
    except TimeoutError:  # the deadline struck (httpx's own timeouts are httpx.TimeoutException)
        raise httpx.TimeoutException(f"no answer within {seconds:g} s") from None


async def _post(url: str, data: bytes, headers: dict, seconds: float) -> None:
    """POST and check the status, all of it (connect, TLS, send, status line, headers) within ``seconds``.

    httpx's timeouts are per connect, write or read, so a receiver dripping its headers a byte at a time would hold
    the attempt, and the job's lock, forever; cancelling the task at the deadline closes the connection wherever it is.
    The status line is the answer: the body is never read, so a huge or endless one neither fills memory nor holds on.
    """
    async with asyncio.timeout(seconds), httpx.AsyncClient(timeout=seconds, follow_redirects=False) as client:
        async with client.stream("POST", url, content=data, headers=headers) as response:
            response.raise_for_status()


def attempt(settings: Settings, entry: dict) -> dict | None:
    """Try ``entry`` once: None when done with it (delivered, refused, given up), else it with its next attempt's time."""
    try:
        deliver(settings, entry["url"], entry["id"], entry["body"])
        return None
    except WebhookRefused as exc:
        log.warning("webhook %s to %s refused: %s", entry["id"], entry["url"], exc.message)
        return None
    except (httpx.HTTPError, OSError) as exc:
        attempts = entry["attempts"] + 1
        if attempts >= settings.webhook_max_attempts:
            log.warning("webhook %s to %s given up after %d attempts: %s", entry["id"], entry["url"], attempts, exc)
            return None
        wait = settings.webhook_retry_base_seconds * 2 ** (attempts - 1)
        return {**entry, "attempts": attempts, "not_before": time.time() + wait}
    except Exception:  # a bug or an odd URL (httpx.InvalidURL): never let one entry block the job's later events
        log.exception("webhook %s to %s dropped", entry["id"], entry["url"])
        return None


def lock_seconds(settings: Settings) -> float:
    """How long a job's lock lasts unrefreshed: one attempt (its name resolved, then the POST within the timeout) and then some."""
    return 3 * settings.webhook_timeout_seconds + 5


def drain(outbox: Outbox, job_id: str, settings: Settings) -> float | None:
    """Deliver ``job_id``'s outbox head first until it is empty (None) or must wait: then the seconds to wait.

    After releasing the lock it looks again, so an event pushed while it held
    the lock (whose own task found the lock taken) is never left behind.
    """
    token, seconds = secrets.token_hex(8), lock_seconds(settings)
    while outbox.lock(job_id, token, seconds):
        try:
            wait = _deliver_due(outbox, job_id, token, settings, seconds)
        finally:
            left = outbox.unlock(job_id, token)
        if wait is not None or not left:
            return wait
    return outbox.retry_after(job_id)


def _deliver_due(outbox: Outbox, job_id: str, token: str, settings: Settings, seconds: float) -> float | None:
    """Holding the lock: deliver heads while they are due; the seconds until the head is, or None (empty, or lock lost)."""
    while (head := outbox.head(job_id)) is not None:
        raw, entry = head
        if (wait := entry["not_before"] - time.time()) > 0:
            return wait
        if not outbox.settle(job_id, token, raw, attempt(settings, entry), seconds):
            return None  # the lock expired during the attempt: its new holder carries on
    return None


class WebhookTask(Task):
    """Holds the per-process Redis client of the outboxes; created lazily, once the worker runs."""

    settings: Settings

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(connect(self.settings))


def deliver_task(task: WebhookTask, job_id: str) -> None:
    """The Celery task: drain the job's outbox, or run again when it must wait (a backoff, a taken lock, Redis down)."""
    try:
        wait = drain(task.outbox, job_id, task.settings)
    except REDIS_ERRORS as exc:  # the entries stay in Redis: try again shortly
        raise task.retry(countdown=1.0, max_retries=None, exc=exc)
    if wait is not None:
        raise task.retry(countdown=wait, max_retries=None)
