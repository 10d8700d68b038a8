"""Queue honesty: where a queued job stands and about how long until a worker takes it.

``position`` is the number of unfinished jobs (queued or running) of the same
Celery queue created before it: 0 means it is next for a free worker, 1 that one
job is ahead (a job queued behind one running job reports 1).

The wait is estimated from the last succeeded runs of each method (their
started -> finished seconds, kept by :meth:`worker.jobs.JobStore.finish`): a
queued job ahead is expected to take its method's median run; a running one the
later of (median minus what it has run) and its own progress ETA, never below 0.
The sum is divided by the number of workers busy with the jobs ahead (at least 1):
with a backlog every worker serving the queue is busy, so that count is the
queue's concurrency. It assumes first in, first out and that the jobs ahead take
as long as recent runs of their methods did; with no recent run of a method a
queued job ahead needs (and no ETA), the estimate is unknown (None).
"""

from dataclasses import dataclass
from statistics import median


@dataclass(frozen=True)
class Ahead:
    """One unfinished job ahead of the queued one."""

    method: str
    running: bool
    started_at: float | None = None
    eta_seconds: float | None = None  # its last progress report's ETA
    reported_at: float | None = None  # when that report was made (wall clock)


def remaining_seconds(job: Ahead, typical: float | None, now: float) -> float | None:
    """How long ``job`` will still occupy a worker; None when nothing is known."""
    guesses = []
    if typical is not None:
        elapsed = now - job.started_at if job.running and job.started_at is not None else 0.0
        guesses.append(typical - elapsed)
    if job.running and job.eta_seconds is not None:
        age = now - job.reported_at if job.reported_at is not None else 0.0
        guesses.append(job.eta_seconds - age)
    return max(0.0, *guesses) if guesses else None


def queue_estimate(ahead: list[Ahead], durations: dict[str, list[float]], now: float) -> dict:
    """``{"position", "estimated_wait_seconds", "based_on"}`` for a job queued behind ``ahead``.

    ``durations``: recent run seconds by method; ``based_on``: how many of them the
    estimate used (the runs of every method whose median it took).
    """
    typical = {method: median(seen) for method, seen in durations.items() if seen}
    total, used = 0.0, set()
    for job in ahead:
        left = remaining_seconds(job, typical.get(job.method), now)
        if left is None:
            return {"position": len(ahead), "estimated_wait_seconds": None, "based_on": 0}
        total += left
        if job.method in typical:
            used.add(job.method)
    workers = max(1, sum(job.running for job in ahead))
    return {
        "position": len(ahead),
        "estimated_wait_seconds": round(total / workers, 1),
        "based_on": sum(len(durations[method]) for method in used),
    }
