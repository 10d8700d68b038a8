"""Concurrent method calls on one shared model, and the one thing that must run alone: fx tracing.

Calls never change the shared model: forward hooks fire only for the thread
that registered them (:func:`engine.hooks.this_thread_only`) and weights never
require gradients, so any number of calls may run at once. torch.fx's tracer,
though, patches ``nn.Module.__call__`` on the class while it traces, so a
forward pass in another thread would be recorded into the trace (or break).
Calls therefore hold :data:`GATE` shared, and the one-time builds of traced
copies (:func:`build_once`) hold it alone. Threads that run calls side by side
may each take their share of the cores (:func:`use_intra_op_threads`).
"""

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, MutableMapping, TypeVar

import torch

T = TypeVar("T")


class Gate:
    """A readers-writer gate whose writer may already be one of the readers (it steps out while waiting)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._active = 0
        self._alone = False
        self._waiting = 0  # builders waiting: new calls wait behind them, so a build is never starved
        self._owner: int | None = None  # the thread holding the gate alone
        self._mine = threading.local()

    def _depth(self) -> int:
        return getattr(self._mine, "depth", 0)

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            if self._depth() == 0:
                if self._owner != threading.get_ident():  # the builder itself may run a pass while it builds
                    while self._alone or self._waiting:
                        self._cond.wait()
                self._active += 1
            self._mine.depth = self._depth() + 1
        try:
            yield
        finally:
            with self._cond:
                self._mine.depth -= 1
                if self._mine.depth == 0:
                    self._active -= 1
                    self._cond.notify_all()

    @contextmanager
    def alone(self) -> Iterator[None]:
        inside = 1 if self._depth() else 0
        with self._cond:
            self._active -= inside
            self._waiting += 1
            self._cond.notify_all()
            while self._alone or self._active > 0:
                self._cond.wait()
            self._waiting -= 1
            self._alone, self._owner = True, threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._alone, self._owner = False, None
                self._active += inside
                self._cond.notify_all()


GATE = Gate()


def build_once(cache: MutableMapping, key, build: Callable[[], T]) -> T:
    """``cache[key]``, made by ``build()`` the first time, while no call runs a forward pass."""
    try:
        return cache[key]
    except KeyError:
        pass
    with GATE.alone():
        if key not in cache:
            cache[key] = build()
        return cache[key]


def use_intra_op_threads(count: int) -> None:
    """The calling thread's torch intra-op threads from now on (OpenMP keeps a count per thread).

    torch gives a thread the process-wide count at its first parallel op, which
    another thread's ``set_num_threads`` may have changed meanwhile; that first
    setting is made now, so it cannot undo ``count`` later.
    """
    torch.get_num_threads()
    torch.set_num_threads(count)
