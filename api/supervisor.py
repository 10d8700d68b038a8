"""Keeps ``scripts/serve``'s children running: a child that dies is started again, with backoff.

Each child runs in its own process group, and the group is the unit: when a
child's main process dies, what is left of its group (a Celery worker's pool
child, maybe still running a job) is killed before the child is started again,
so one worker never becomes two. Restarts wait ``base_delay * 2**n`` seconds
(at most ``max_delay``), ``n`` counting the restarts since the child last ran
``healthy_seconds``; a child is retried for as long as the launcher runs, like
systemd's ``Restart=always`` or Kubernetes' crash-loop backoff, because the
alternative (stopping the service) is what a one-machine deployment must not do.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


class StartFailed(Exception):
    """A child could not be started now (its message says why); it is tried again later."""


@dataclass
class Child:
    name: str
    spawn: Callable[[], subprocess.Popen]  # raises StartFailed when it cannot start now
    grace: float  # seconds it may take to stop after SIGTERM before it is killed
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0  # since it last ran healthy_seconds
    restart_at: float | None = None


def say(line: str) -> None:
    """One status line of the launcher."""
    print(f"ConvLens: {line}", file=sys.stderr, flush=True)


class Supervisor:
    def __init__(self, children: list[Child], base_delay: float = 1.0, max_delay: float = 30.0, healthy_seconds: float = 60.0):
        self.children = children
        self.base_delay, self.max_delay, self.healthy_seconds = base_delay, max_delay, healthy_seconds

    def start(self, child: Child) -> None:
        child.process, child.started_at, child.restart_at = child.spawn(), time.monotonic(), None

    def check(self) -> None:
        """Notice children that died (and schedule their restart); start those whose delay has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and _exited(child.process):
                ran = now - child.started_at
                how = _describe(_kill_group_and_reap(child.process))
                child.process = None
                if ran >= self.healthy_seconds:
                    child.restarts = 0
                delay = self._schedule(child, now)
                streak = f" (restart {child.restarts} in a row)" if child.restarts > 1 else ""
                say(f"{child.name} {how} after {ran:.0f} s; restarting it in {delay:g} s{streak}")
            elif child.process is None and child.restart_at is not None and now >= child.restart_at:
                try:
                    self.start(child)
                except StartFailed as exc:
                    say(f"{child.name} not restarted: {exc}; trying again in {self._schedule(child, now):g} s")

    def _schedule(self, child: Child, now: float) -> float:
        """Set the child's next start (exponential backoff); returns the delay."""
        delay = min(self.max_delay, self.base_delay * 2**child.restarts)
        child.restart_at, child.restarts = now + delay, child.restarts + 1
        return delay

    def stop(self) -> None:
        """Stop the children in reverse order of start, each with its grace period."""
        for child in reversed(self.children):
            if child.process is not None:
                _stop(child.process, child.grace)
                child.process = None


def _exited(process: subprocess.Popen) -> bool:
    """Whether the process ended, without reaping it: until reaped its id (its group's id) cannot be reused."""
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group_and_reap(process: subprocess.Popen) -> int:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return process.wait()


def _describe(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def _stop(process: subprocess.Popen, grace: float) -> None:
    os.kill(process.pid, signal.SIGTERM)  # not Popen.send_signal, which reaps an exited process
    deadline = time.monotonic() + grace
    while not _exited(process) and time.monotonic() < deadline:
        time.sleep(0.05)
    _kill_group_and_reap(process)
