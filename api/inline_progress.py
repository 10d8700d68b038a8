"""The progress callback of one inline call: it stops the call at its next step past the inline
time limit, or once the client that asked has disconnected (the route watches for that).

The engine's methods report progress between batches, samples and steps, so
the computation ends there (:class:`engine.errors.Cancelled`) instead of
running on for nobody.
"""

import asyncio
import threading
import time
from typing import Any

from fastapi import Request

from engine.errors import Cancelled


class InlineTimeLimit(Cancelled):
    """The call ran past the inline time limit."""


class ClientGone(Cancelled):
    """The client disconnected before the answer was ready."""


class InlineProgress:
    def __init__(self, limit_seconds: float):
        self.limit_seconds = limit_seconds
        self.deadline = time.monotonic() + limit_seconds
        self.gone = threading.Event()

    def __call__(self, step: int, total: int, preview: Any = None, **info: Any) -> None:
        if self.gone.is_set():
            raise ClientGone("the client disconnected")
        if time.monotonic() > self.deadline:
            raise InlineTimeLimit(f"the call ran past the inline time limit of {self.limit_seconds:g} s")


async def until_done_or_gone(request: Request, work: asyncio.Future, progress: InlineProgress, poll: float = 0.1):
    """The result of ``work``; a client that disconnects meanwhile flags ``progress`` so the work stops at its next step."""
    try:
        while not work.done():
            await asyncio.wait({work}, timeout=poll)
            if not work.done() and await request.is_disconnected():
                progress.gone.set()
                break
        return await work
    except asyncio.CancelledError:
        progress.gone.set()
        raise
