"""Dynamic batching of inline calls, as TorchServe's and Triton's batchers do for predictions.

Calls of one method on one model whose params let them share a pass
(:class:`engine.registry.Batching`) and that arrive within ``delay`` seconds of
the first run as one batch of at most ``max_batch``: the first call's thread
waits that long (or until the batch is full), runs the batch with
:func:`engine.run.run_calls` and hands each call its own answer or error; the
others wait for theirs. A call runs at once, alone, when no other inline call is
running or waiting, or when it cannot share a pass; otherwise it is delayed by
``delay`` at most. Each call keeps its own checks:
a request that has gone or ran past its time limit stops at its own next
check without touching the batch it was in.
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.progress import Progress
from engine.registry import Inputs
from engine.result import Result
from engine.run import Call, run_call, run_calls


@dataclass
class _Member:
    call: Call
    inputs: Inputs
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Result | BaseException | None = None


@dataclass
class _Batch:
    members: list[_Member] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)


class InlineBatcher:
    def __init__(self, max_batch: int, delay_seconds: float, device: str | None, observe: Callable[[str, int], None] = lambda _m, _n: None,
                 crowded: Callable[[], bool] = lambda: True):
        self.max_batch, self.delay, self.device, self.observe = max_batch, delay_seconds, device, observe
        self.crowded = crowded  # whether other inline calls are running or waiting: alone, a call never waits
        self._lock = threading.Lock()
        self._open: dict[tuple, _Batch] = {}

    def run(self, call: Call, inputs: Inputs, progress: Progress) -> Result:
        """The answer to ``call``, computed alone or in a batch with the calls that arrive with it."""
        batching = call.method.batching
        key = batching.key(call.params) if batching is not None else None
        if key is None or self.max_batch < 2 or self.delay <= 0 or not self.crowded():
            return run_call(call, inputs, progress, self.device)
        progress(0, 1)  # gone or out of time already: never joins a batch
        group = (call.method.name, call.spec.identity, key)
        member = _Member(call, inputs)
        with self._lock:
            batch = self._open.get(group)
            leads = batch is None
            if leads:
                batch = self._open[group] = _Batch()
            batch.members.append(member)
            if len(batch.members) >= self.max_batch:
                self._close(group, batch)
        if leads:
            batch.full.wait(self.delay)
            with self._lock:
                self._close(group, batch)
            self._run(call.method.name, batch.members)
        else:
            member.done.wait()
        progress(1, 1)
        if isinstance(member.outcome, BaseException):
            raise member.outcome
        return member.outcome

    def _close(self, group: tuple, batch: _Batch) -> None:
        """No call joins ``batch`` any more (under the lock)."""
        if self._open.get(group) is batch:
            del self._open[group]
        batch.full.set()

    def _run(self, method_name: str, members: list[_Member]) -> None:
        try:
            outcomes = run_calls([(member.call, member.inputs) for member in members], self.device)
        except BaseException as error:  # a fault of the batch itself reaches every call waiting on it
            outcomes = [error] * len(members)
        self.observe(method_name, len(members))
        for member, outcome in zip(members, outcomes):
            member.outcome = outcome
            member.done.set()
