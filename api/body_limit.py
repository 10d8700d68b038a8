"""A pure-ASGI middleware that refuses request bodies over a size limit.

Neither uvicorn nor FastAPI limits bodies. This answers 413
``payload_too_large`` (problem+json) before the body is buffered: at once when
``Content-Length`` is over the limit, otherwise as soon as the streamed bytes
pass it (chunked uploads). Whatever the application was about to answer to the
aborted body is dropped in favour of the 413. ``route_limits`` gives single
paths (model uploads) their own limit.
"""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import PROBLEM_JSON, problem_body


class _BodyTooLarge(Exception):
    """Raised from ``receive`` to stop the application reading further."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, route_limits: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.route_limits = route_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.route_limits.get(scope.get("path", ""), self.max_bytes)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, declared, limit)
            return

        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(send, None, limit)

    async def _refuse(self, send: Send, declared: int | None, limit: int) -> None:
        size = f"{declared} bytes" if declared is not None else "the streamed body"
        body = json.dumps(
            problem_body(413, "payload_too_large", f"{size} is over the {limit}-byte upload limit")
        ).encode()
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
