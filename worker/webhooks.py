"""Webhooks: a job's events POSTed to the URL it named, signed the Standard Webhooks way.

Each delivery is its own Celery task on the ``webhooks`` queue, so a slow or
failing receiver never holds up a job's worker; a failed attempt is retried
with exponential backoff (same ``webhook-id`` every attempt, so receivers can
drop duplicates). Headers (https://www.standardwebhooks.com/):

- ``webhook-id``: the delivery's id; ``webhook-timestamp``: Unix seconds;
- ``webhook-signature``: ``v1,`` + base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}")).

Targets are checked when the job is submitted and again before every attempt
(a name may resolve elsewhere later): loopback, private, link-local and other
non-global addresses are refused unless ``webhook_allow_private`` is set, so a
caller cannot make the service probe its own network (SSRF).
"""

import base64
import hashlib
import hmac
import ipaddress
import logging
import secrets
import socket
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

import httpx
import pydantic_core

from worker.jobs import Job

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


def enqueue(celery, job: Job, event: str) -> None:
    """Queue one delivery of ``event`` for ``job`` when it asked for it (never raises: a job outlives its hooks)."""
    if not wants(job, event):
        return
    body = pydantic_core.to_json(payload(job, event), inf_nan_mode="null").decode()  # JSON has no NaN
    try:
        celery.send_task(TASK_NAME, args=[job.webhook["url"], f"msg_{secrets.token_hex(12)}", body], queue=QUEUE)
    except Exception:  # the broker is down: this event is lost, the job is not
        log.exception("could not queue the %s webhook of job %s", event, job.id)


def deliver(task, url: str, message_id: str, body: str) -> int:
    """One attempt; raises (to be retried) unless the receiver answered 2xx."""
    settings = task.settings
    check_target(url, settings.webhook_allow_private)
    timestamp = int(time.time())
    data = body.encode()
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(settings.webhook_secret, message_id, timestamp, data),
    }
    response = httpx.post(url, content=data, headers=headers, timeout=settings.webhook_timeout_seconds, follow_redirects=False)
    response.raise_for_status()
    return response.status_code


def deliver_task(task, url: str, message_id: str, body: str) -> int | None:
    """The Celery task: deliver, or retry with backoff ``base * 2**(n-1)`` until the attempts are spent."""
    try:
        return deliver(task, url, message_id, body)
    except WebhookRefused as exc:
        log.warning("webhook %s to %s refused: %s", message_id, url, exc.message)
        return None
    except (httpx.HTTPError, OSError) as exc:
        attempt = task.request.retries + 1
        if attempt >= task.settings.webhook_max_attempts:
            log.warning("webhook %s to %s given up after %d attempts: %s", message_id, url, attempt, exc)
            return None
        raise task.retry(countdown=task.settings.webhook_retry_base_seconds * 2 ** (attempt - 1), max_retries=None, exc=exc)
