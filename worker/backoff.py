"""Retry a call on transient errors with exponential backoff, within a time budget."""

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def with_backoff(call: Callable[[], T], errors: tuple[type[BaseException], ...], budget_seconds: float,
                 first_delay: float = 0.1, max_delay: float = 5.0) -> T:
    """``call()``, retried on ``errors`` (delays doubling up to ``max_delay``) until ``budget_seconds`` are spent;
    then the last error is raised."""
    deadline = time.monotonic() + budget_seconds
    delay = first_delay
    while True:
        try:
            return call()
        except errors:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            time.sleep(min(delay, left))
            delay = min(delay * 2, max_delay)
