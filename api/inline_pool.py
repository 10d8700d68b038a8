"""The bounded thread pool that runs inline work off the event loop, shared fairly between keys.

Decoding, the method itself and encoding all run here, so the event loop only
moves bytes. ``threads`` calls work at once and at most ``backlog`` more wait
(each admitted call has a thread; a working slot lets it work, and a call
waiting for its batch lends its slot to another, :meth:`InlinePool.lend_slot`);
past that a call is refused with 429 + Retry-After instead of queueing
without bound (a busy server answers quickly that it is busy). Each key may
have at most its share of calls running or waiting (``per_key``, or the key's
own ``inline_per_key``; 0: no cap), so one key never holds every thread nor
fills the backlog: its next call is refused (429 ``inline_per_key_limit``)
and the other keys' calls keep their place.
"""

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, TypeVar

import torch

from engine.concurrency import use_intra_op_threads

from api.concurrent_counts import ConcurrentCounts
from api.inline_batcher import InlineBatcher
from api.keys import ApiKey
from api.problems import Problem

T = TypeVar("T")


class InlinePool:
    def __init__(self, threads: int, backlog: int, per_key: int, retry_after_s: int = 1):
        self.threads, self.capacity, self.per_key, self.retry_after_s = threads, threads + backlog, per_key, retry_after_s
        self.batcher: InlineBatcher | None = None  # runs the calls that can share a pass together
        # each thread takes torch's intra-op threads as they are now: the batcher's runners change the count new threads start with
        self._executor = ThreadPoolExecutor(max_workers=threads + backlog, thread_name_prefix="convlens-inline",
                                            initializer=use_intra_op_threads, initargs=(torch.get_num_threads(),))
        self._slots = threading.Semaphore(threads)  # calls working at once
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished (running or waiting)
        self._by_key = ConcurrentCounts()  # the same, per key id

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn: Callable[..., T], *args, key: ApiKey) -> T:
        """Run ``fn(*args)`` in the pool for ``key``; 429 when the key has its share pending, or the pool is full.

        A call counts until its thread finishes, even when the client that
        asked for it has gone: the bound is on work, not on open requests.
        """
        share = self.per_key if key.inline_per_key is None else key.inline_per_key
        with self._lock:
            if not self._by_key.take(key.id, share):
                raise self._refusal("inline_per_key_limit", f"this key has {share} inline calls running or waiting, its most "
                                    "at once; retry when one has finished, or submit a job")
            if self._pending >= self.capacity:
                self._by_key.give_back(key.id)
                raise self._refusal("busy", f"{self._pending} inline calls are running or waiting; retry shortly or submit a job")
            self._pending += 1
        future = self._executor.submit(self._in_slot, fn, *args)
        future.add_done_callback(lambda _future: self._finished(key.id))
        return await asyncio.wrap_future(future)

    def _in_slot(self, fn: Callable[..., T], *args) -> T:
        with self._slots:
            return fn(*args)

    @contextmanager
    def lend_slot(self) -> Iterator[None]:
        """Within a call of this pool: another call may work while this one waits (for its batch)."""
        self._slots.release()
        try:
            yield
        finally:
            self._slots.acquire()

    def _refusal(self, code: str, detail: str) -> Problem:
        return Problem(429, code, detail, headers={"Retry-After": str(self.retry_after_s)})

    def _finished(self, key_id: str) -> None:
        with self._lock:
            self._pending -= 1
            self._by_key.give_back(key_id)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.batcher is not None:
            self.batcher.close()
