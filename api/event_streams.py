"""Each tenant's open event streams (``GET /v1/jobs/{id}/events``) and ``Prefer: wait`` submissions, at most ``per_tenant`` at once in this process.

A stream holds a Redis connection and its subscription, and a socket, for as long as the
client listens, so without a cap one tenant could use up the API's connections and file
descriptors; a waiting submission holds the same while it waits, so it takes a place of the
same count. A place is taken before the stream or the wait starts and given back when it
ends, however it ends: its job finished, its client gone (the server cancels the body or the
request), an error. Past the cap a stream is answered 429 ``too_many_streams`` naming the
``limit``, with Retry-After; a wait is not refused but skipped (:meth:`EventStreams.place`).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from api.concurrent_counts import ConcurrentCounts
from api.problems import Problem


class HeldStream(StreamingResponse):
    """A streaming response that calls ``release`` once it is over, sent in full or not."""

    def __init__(self, content, release: Callable[[], None], **kwargs):
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class EventStreams:
    def __init__(self, per_tenant: int, retry_after_s: int):
        self.per_tenant, self.retry_after_s = per_tenant, retry_after_s
        self.open = ConcurrentCounts()

    def response(self, tenant: str, content, **kwargs) -> HeldStream:
        """``content`` streamed as one of ``tenant``'s streams; 429 when it has its cap open."""
        if not self.open.take(tenant, self.per_tenant):
            raise Problem(
                429, "too_many_streams",
                f"this tenant has {self.per_tenant} event streams and job waits open, its most at once; close one, or poll GET /v1/jobs/{{id}}",
                headers={"Retry-After": str(self.retry_after_s)}, limit=self.per_tenant,
            )
        return HeldStream(content, lambda: self.open.give_back(tenant), **kwargs)

    @contextmanager
    def place(self, tenant: str) -> Iterator[bool]:
        """One of ``tenant``'s places held for the block (a ``Prefer: wait``); yields False, holding none, when it has its cap open."""
        taken = self.open.take(tenant, self.per_tenant)
        try:
            yield taken
        finally:
            if taken:
                self.open.give_back(tenant)
