"""Every request gets an id, a JSON log line and a latency observation (pure ASGI, outermost).

The id is the client's ``X-Request-ID`` when it is a sane token, else a new
one; it is echoed in the response, kept in ``request.state.request_id`` (the
job routes store it in the job record, and the worker logs it) and in every
log line of the request.
"""

import re
import time
import uuid

from api.metrics import Metrics
from worker.logs import json_logger

_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
log = json_logger("convlens.requests")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id":
            sent = value.decode("latin-1")
            if _SANE_ID.fullmatch(sent):
                return sent
    return uuid.uuid4().hex


class Observe:
    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = request_id_of(scope["headers"])
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        start = time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "<unmatched>")
            self.metrics.requests.labels(scope["method"], route, str(status)).observe(seconds)
            key = scope["state"].get("api_key")
            log.info(
                "%s %s %d", scope["method"], scope["path"], status,
                extra={"request_id": request_id, "method": scope["method"], "path": scope["path"], "route": route,
                       "status": status, "duration_ms": round(seconds * 1000, 3), "key_id": getattr(key, "id", None)},
            )
