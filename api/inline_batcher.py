"""Dynamic batching of inline calls, as TorchServe's and Triton's batchers do for predictions.

Calls of one method on one model whose params let them share a pass
(:class:`engine.registry.Batching`) queue by group. ``runners`` threads of the
batcher's own, each with its share of torch's intra-op threads, take the
oldest group's calls as one batch of at most ``max_batch`` once it is full or
its first call has waited ``delay`` seconds (while every runner is busy, calls
keep gathering), run it with :func:`engine.run.run_calls` and hand each call
its own answer or error. A queued call lends its inline thread's working slot
(``lend``), so more calls than there are inline threads gather into batches.
A call runs at once, alone, in its own thread when no other inline call is
running or waiting, or when it cannot share a pass; otherwise it is delayed by
``delay`` at most before a free runner takes it. Each call keeps its own
checks: a request that has gone or ran past its time limit before its batch
runs is left out of it, and after it stops at its own next check, without
touching the others.
"""

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch

from engine.concurrency import use_intra_op_threads
from engine.progress import Progress
from engine.registry import Inputs
from engine.result import Result
from engine.run import Call, run_call, run_calls


@dataclass
class _Member:
    call: Call
    inputs: Inputs
    progress: Progress
    arrived: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Result | BaseException | None = None

    def answer(self, outcome: Result | BaseException) -> None:
        self.outcome = outcome
        self.done.set()


class InlineBatcher:
    def __init__(self, max_batch: int, delay_seconds: float, device: str | None, observe: Callable[[str, int], None] = lambda _m, _n: None,
                 crowded: Callable[[], bool] = lambda: True, runners: int = 1,
                 lend: Callable[[], AbstractContextManager] = nullcontext):
        self.max_batch, self.delay, self.device, self.observe = max_batch, delay_seconds, device, observe
        self.crowded = crowded  # whether other inline calls are running or waiting: alone, a call never waits
        self.lend = lend  # entered while a call waits for its batch: its thread's working slot is free meanwhile
        self.runners, self.runner_threads = runners, max(1, torch.get_num_threads() // runners)
        self._ready = threading.Condition()
        self._queues: dict[tuple, list[_Member]] = {}  # calls waiting, by group, oldest first
        self._threads: list[threading.Thread] = []
        self._closed = False

    def run(self, call: Call, inputs: Inputs, progress: Progress) -> Result:
        """The answer to ``call``, computed alone or in a batch with the calls that arrive with it."""
        batching = call.method.batching
        key = batching.key(call.params) if batching is not None else None
        if key is None or self.max_batch < 2 or self.delay <= 0 or not self.crowded():
            return run_call(call, inputs, progress, self.device)
        progress(0, 1)  # gone or out of time already: never joins a batch
        member = _Member(call, inputs, progress)
        with self._ready:
            self._start_runners()
            self._queues.setdefault((call.method.name, call.spec.identity, key), []).append(member)
            self._ready.notify_all()
        with self.lend():
            member.done.wait()
        progress(1, 1)
        if isinstance(member.outcome, BaseException):
            raise member.outcome
        return member.outcome

    def close(self) -> None:
        """Run what is queued, then stop the runners."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        for thread in self._threads:
            thread.join()

    def _start_runners(self) -> None:
        """The runner threads, started with the first queued call (under the lock)."""
        while len(self._threads) < self.runners:
            thread = threading.Thread(target=self._serve, name=f"convlens-batch-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self) -> None:
        use_intra_op_threads(self.runner_threads)  # runners share the cores
        while (batch := self._take()) is not None:
            self._run(batch)

    def _take(self) -> list[_Member] | None:
        """The next batch: the oldest group that is full or has waited ``delay`` (None once closed and empty)."""
        with self._ready:
            while self._queues or not self._closed:
                now = time.monotonic()
                due = {group: waiting[0].arrived + self.delay for group, waiting in self._queues.items()}
                ready = [group for group, waiting in self._queues.items()
                         if len(waiting) >= self.max_batch or due[group] <= now or self._closed]
                if not ready:
                    self._ready.wait(min(due.values(), default=now + 60) - now)
                    continue
                group = min(ready, key=due.__getitem__)
                batch, rest = self._queues[group][: self.max_batch], self._queues[group][self.max_batch :]
                if rest:
                    self._queues[group] = rest
                else:
                    del self._queues[group]
                return batch
            return None

    def _run(self, members: list[_Member]) -> None:
        wanted = []
        for member in members:
            try:
                member.progress(0, 1)  # gone or out of time while queued: answered alone, not run
                wanted.append(member)
            except Exception as error:
                member.answer(error)
        if not wanted:
            return
        try:
            outcomes = run_calls([(member.call, member.inputs) for member in wanted], self.device)
        except BaseException as error:  # a fault of the batch itself reaches every call waiting on it
            outcomes = [error] * len(wanted)
        self.observe(wanted[0].call.method.name, len(wanted))
        for member, outcome in zip(wanted, outcomes):
            member.answer(outcome)
