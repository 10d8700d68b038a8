"""The reaper: a thread in each worker's main process that finds unfinished jobs nobody will finish
(and, every ``retention_sweep_seconds``, runs the retention sweep, :mod:`worker.retention`).

Every ``redelivery_check_seconds`` it asks :meth:`worker.jobs.JobStore.reap`
for running jobs whose worker's heartbeat expired (requeued; a delivery past
``max_deliveries`` fails as a poison pill, with its reason) and queued jobs whose message may be
lost, and sends those again. Several workers may reap at once: each
transition is one atomic script, and a duplicate message does nothing.
"""

import logging
import threading
import time

from celery import Celery

from worker.jobs import REDIS_ERRORS, JobStore, connect
from worker.queue_app import send_job
from worker.retention import sweep
from worker.broker import BROKER_ERRORS
from worker.settings import Settings
from worker.storage import StorageError, make_storage
from worker import webhooks

log = logging.getLogger(__name__)


def reap_once(jobs: JobStore, app: Celery, settings: Settings) -> dict[str, list[str]]:
    found = jobs.reap(settings.resend_queued_after_seconds)
    for job_id in found["requeue"]:
        job = jobs.get(job_id)
        if job is None or job.finished:
            continue
        send_job(app, job.id, job.queue)
        jobs.mark_sent(job)
    for job_id in found["failed"]:
        log.warning("job %s failed: its message was never sent", job_id)
        webhooks.enqueue(app, jobs, jobs.get(job_id), "completed")
    for job_id in found["aborted"]:
        log.info("job %s aborted: not started by its deadline", job_id)
        webhooks.enqueue(app, jobs, jobs.get(job_id), "completed")
    if found["requeue"]:
        log.info("requeued jobs %s", ", ".join(found["requeue"]))
    return found


class Reaper(threading.Thread):
    def __init__(self, app: Celery, settings: Settings):
        super().__init__(name="convlens-reaper", daemon=True)
        self.app, self.settings = app, settings
        self.jobs = JobStore(connect(settings), settings.job_ttl_seconds, heartbeat_seconds=settings.heartbeat_seconds, unsent_seconds=settings.unsent_job_seconds)
        self.stopped = threading.Event()
        self.swept_at = float("-inf")

    def run(self) -> None:
        while not self.stopped.wait(self.settings.redelivery_check_seconds):
            try:
                reap_once(self.jobs, self.app, self.settings)
                if time.monotonic() - self.swept_at >= self.settings.retention_sweep_seconds:
                    self.swept_at = time.monotonic()
                    sweep(make_storage(self.settings), self.jobs, self.settings.upload_ttl_seconds)
            except StorageError as exc:
                log.warning("retention sweep: storage unreachable (%s)", exc)
            except (*REDIS_ERRORS, *BROKER_ERRORS) as exc:
                log.warning("reaper: Redis unreachable (%s); next check in %s s", exc, self.settings.redelivery_check_seconds)
            except Exception:  # never let the reaper die
                log.exception("reaper check failed")
