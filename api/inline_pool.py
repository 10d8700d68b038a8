"""The bounded thread pool that runs inline work off the event loop.

Decoding, the method itself and encoding all run here, so the event loop only
moves bytes. ``threads`` calls run at once and at most ``backlog`` more wait;
past that a call is refused with 429 + Retry-After instead of queueing
without bound (a busy server answers quickly that it is busy).
"""

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from api.problems import Problem

T = TypeVar("T")


class InlinePool:
    def __init__(self, threads: int, backlog: int, retry_after_s: int = 1):
        self.threads, self.capacity, self.retry_after_s = threads, threads + backlog, retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="convlens-inline")
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished (running or waiting)

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args) -> T:
        """Run ``fn(*args)`` in the pool; 429 when ``capacity`` calls are already pending.

        A call counts until its thread finishes, even when the client that
        asked for it has gone: the bound is on work, not on open requests.
        """
        with self._lock:
            if self._pending >= self.capacity:
                raise Problem(
                    429,
                    "busy",
                    f"{self._pending} inline calls are running or waiting; retry shortly or submit a job",
                    headers={"Retry-After": str(self.retry_after_s)},
                )
            self._pending += 1
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._finished)
        return await asyncio.wrap_future(future)

    def _finished(self, _future) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
