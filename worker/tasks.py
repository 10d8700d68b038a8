"""The one generic task: run any registered method on stored inputs, by job id.

The message carries only the job id; method, model, params and input image
ids come from the job record, which the API wrote before sending. The task is
idempotent (a redelivered job whose record is final does nothing), so late
acknowledgement is safe: a job killed with its worker runs again.

While a job runs its worker heartbeats (:class:`Heartbeat`), so that the
reaper can tell a job whose worker is gone from a long one. Recording the
result retries Redis and storage errors with backoff for
``record_retry_seconds``; the record changes in one atomic script, so it is
never half-written.

Cancelling is cooperative (the progress callback raises Cancelled); a job whose
cancel was requested never ends ``succeeded``, even when its method returns
without reporting progress, and one that ignores it past the grace period has
its process killed by the API (:func:`worker.queue_app.terminate_job`).
"""

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded, TimeLimitExceeded
from PIL import Image

from engine.errors import Cancelled, EngineError
from engine.picture_names import named
from engine.run import picture_counts, prepare, run_call
from worker.feature_store import StoredFeatures
from worker.artifacts import discard_result, store_preview, store_result
from worker.backoff import with_backoff
from worker.jobs import FINISHED, REDIS_ERRORS, Job, JobStore, connect
from worker.metrics import record_job, record_worker_memory
from worker.model_store import ModelStore
from worker.settings import Settings
from worker.storage import Storage, StorageUnavailable, make_storage
from worker.style_models import save_trained_style_model
from worker.uploads import UnknownImage, load_image
from worker.usage import StorageQuotaExceeded, StoredBytes
from worker import webhooks

TASK_NAME = "convlens.run_job"
log = logging.getLogger(__name__)


class JobTask(Task):
    """Holds the per-process connections; created lazily, so only after the pool forked."""

    settings: Settings

    @cached_property
    def jobs(self) -> JobStore:
        return JobStore(connect(self.settings), self.settings.job_ttl_seconds, heartbeat_seconds=self.settings.heartbeat_seconds, unsent_seconds=self.settings.unsent_job_seconds)

    @cached_property
    def storage(self) -> Storage:
        return make_storage(self.settings)

    @cached_property
    def models(self) -> ModelStore:
        return ModelStore(self.jobs.redis, self.storage, self.settings)

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        """Publish the job's metrics (its final state and duration, this process's memory) for /metrics."""
        if not args:
            return
        try:
            record_worker_memory(self.jobs.redis, _worker_name())
            job = self.jobs.get(args[0]) if retval in ENDED else None
            if job is not None and job.finished:
                ran = job.finished_at - job.started_at if job.started_at and job.finished_at else None
                record_job(self.jobs.redis, job.method, job.state, ran)
        except REDIS_ERRORS:
            log.warning("job %s: metrics not recorded (Redis unreachable)", args[0])

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # Runs in the pool's parent when the hard time limit killed the child,
        # which had no chance to record anything itself.
        if isinstance(exc, TimeLimitExceeded) and args:
            job = self.jobs.get(args[0])
            if job is not None:
                self.jobs.fail(job, "time_limit", f"the job ran past the hard limit of {self.settings.job_time_limit} s")
                webhooks.enqueue(self.app, self.jobs, self.jobs.get(job.id), "completed")


ENDED = FINISHED | {"poisoned"}  # what a delivery returns when it ended its job


def run_job_and_notify(task: JobTask, job_id: str) -> str:
    """:func:`run_job`, then the job's ``completed`` webhook when this delivery is what ended it."""
    outcome = run_job(task, job_id)
    if outcome in ENDED:
        webhooks.enqueue(task.app, task.jobs, task.jobs.get(job_id), "completed")
    return outcome


def run_job(task: JobTask, job_id: str) -> str:
    jobs, settings = task.jobs, task.settings
    worker = _worker_name()
    try:
        action, deliveries = jobs.start(job_id, settings.max_deliveries, worker)
        if action != "run":
            log.info("job %s not run: %s", job_id, action, extra={"job_id": job_id})
            return action
        with Heartbeat(jobs, worker, settings.heartbeat_seconds):
            job = jobs.get(job_id)
            record_worker_memory(jobs.redis, worker)
            return _run(task, job, deliveries)
    except REDIS_ERRORS as exc:
        # The records are unreachable, so nothing can be recorded: requeue the
        # message (or, with the broker down too, leave it unacknowledged to be
        # redelivered; the reaper requeues a running job once its heartbeat
        # expires). Acknowledging it instead would strand a job that never
        # started, queued until its message is resent an hour later. The
        # delivery count still bounds the retries.
        raise Reject(exc, requeue=True) from exc


def _run(task: JobTask, job: Job, deliveries: int) -> str:
    jobs, settings = task.jobs, task.settings
    budget = settings.record_retry_seconds

    def record(state: str, **fields) -> str | None:
        return with_backoff(lambda: jobs.finish(job, state, **fields), REDIS_ERRORS, budget)

    def fail(code: str, message: str) -> str:
        return record("failed", error={"code": code, "message": message}) or "not running"

    log.info("job %s: %s on %s (delivery %d)", job.id, job.method, job.model, deliveries,
             extra={"job_id": job.id, "request_id": job.request_id, "tenant": job.tenant})
    webhooks.enqueue(task.app, jobs, job, "start")
    try:
        call = prepare(job.method, job.model, job.params, picture_counts(job.inputs), job.tenant, settings.job_caps(), task.models.spec_for)
        inputs = _load_inputs(task.storage, job, settings.max_image_pixels)
        progress = JobProgress(jobs, task.storage, job, settings, lambda job: webhooks.enqueue(task.app, jobs, job, "progress"))
        result = run_call(call, inputs, progress, settings.device, StoredFeatures(task.storage))
        usage = StoredBytes(jobs.redis, jobs.prefix)
        with_backoff(lambda: save_trained_style_model(task.storage, usage, job.tenant, job.id, job.method, result, job.max_stored_bytes or 0),
                     (StorageUnavailable,), budget)
        artifacts = with_backoff(lambda: store_result(task.storage, job.id, result), (StorageUnavailable,), budget)
    except Cancelled:
        return record("cancelled") or "not running"
    except EngineError as exc:  # ImageRejected included: a stored input that no longer decodes
        return fail(exc.code, exc.message)
    except UnknownImage as exc:
        return fail("unknown_image", str(exc))
    except StorageQuotaExceeded as exc:
        return fail("storage_quota_exceeded", str(exc))
    except SoftTimeLimitExceeded:
        # It strikes anywhere, maybe between a Redis command and its reply: a pooled connection with the reply unread
        # would hand it to the next command (this record's), so the idle ones reconnect.
        jobs.redis.connection_pool.disconnect(inuse_connections=False)
        return fail("time_limit", f"the job ran past its limit of {settings.job_soft_time_limit} s")
    except StorageUnavailable as exc:
        return fail("storage_unavailable", str(exc))
    except REDIS_ERRORS:
        raise
    except Exception as exc:  # a bug in a method: record it, never leave the job running
        log.exception("job %s failed", job.id)
        return fail("internal_error", f"{type(exc).__name__}: {exc}")
    ended = record("succeeded", artifacts=artifacts, result=result.data, progress=progress.final())
    if ended != "succeeded":  # cancelled while its method ran on without reporting progress
        discard_result(task.storage, artifacts)
    return ended or "not running"


class Heartbeat:
    """Refreshes ``worker``'s heartbeat every ``seconds`` from a thread while a job runs; removed at the end."""

    def __init__(self, jobs: JobStore, worker: str, seconds: float):
        self.jobs, self.worker, self.seconds = jobs, worker, seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="convlens-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.jobs.heartbeat(self.worker)
            except REDIS_ERRORS:
                log.warning("heartbeat of %s not recorded: Redis unreachable", self.worker)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.jobs.stop_heartbeat(self.worker)
        except REDIS_ERRORS:
            pass  # it expires by itself


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _load_inputs(storage: Storage, job: Job, max_pixels: int) -> dict:
    names = job.input_names or {}

    def load(slot: str, position: int, image_id: str) -> Image.Image:
        name = names[slot][position] if len(names.get(slot, ())) > position else None
        return named(load_image(storage, image_id, max_pixels, job.tenant), image_id, name)

    return {slot: [load(slot, i, image_id) for i, image_id in enumerate(ids)] if isinstance(ids, list) else load(slot, 0, ids)
            for slot, ids in job.inputs.items()}


@dataclass
class JobProgress:
    """The engine's progress callback for one job: stores step, ETA and throttled previews.

    Every step asks Redis whether the job was cancelled (one round trip) and
    raises Cancelled if so; past ``job_soft_time_limit`` it raises
    SoftTimeLimitExceeded itself, as Celery's signal may be swallowed by library
    code that catches Exception where it lands (redis-py's metrics hooks do).
    Progress and previews are written at most every
    ``progress_interval_seconds`` / ``preview_interval_seconds``.
    """

    jobs: JobStore
    storage: Storage
    job: Job
    settings: Settings
    on_progress: Callable[[Job], None] | None = None  # the progress webhook, at most every webhook_progress_interval_seconds

    def __post_init__(self):
        self.began = time.monotonic()
        self.last_store = self.last_preview = self.last_hook = float("-inf")
        self.state: dict = {}

    def __call__(self, step: int, total: int, preview: Image.Image | None = None, **info) -> None:
        now = time.monotonic()
        elapsed = now - self.began
        if elapsed >= self.settings.job_soft_time_limit:
            raise SoftTimeLimitExceeded(f"job {self.job.id} ran past its soft limit")
        due = now - self.last_store >= self.settings.progress_interval_seconds or step >= total or step <= 1
        if preview is not None and (now - self.last_preview >= self.settings.preview_interval_seconds or step >= total):
            store_preview(self.storage, self.job.id, preview)
            self.last_preview, due = now, True
            self.state["preview_step"] = step
        self.state.update(
            step=step,
            total=total,
            fraction=round(step / total, 4) if total else None,
            elapsed_seconds=round(elapsed, 3),
            eta_seconds=round(elapsed / step * (total - step), 3) if step > 0 else None,
            info={name: _scalar(value) for name, value in info.items() if _scalar(value) is not None},
        )
        if due:
            self.last_store = now
        if self.jobs.report_progress(self.job.id, self.state, store=due):
            raise Cancelled(f"job {self.job.id} was cancelled")
        if self.on_progress is not None and now - self.last_hook >= self.settings.webhook_progress_interval_seconds:
            self.last_hook = now
            self.on_progress(replace(self.job, state="running", progress=dict(self.state)))

    def final(self) -> dict | None:
        if not self.state:
            return None
        return {**self.state, "step": self.state["total"], "fraction": 1.0, "eta_seconds": 0.0}


def _scalar(value):
    """JSON-able scalars only (numpy and torch scalars become Python numbers)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        value = value.item()
    return value if isinstance(value, (int, float, str, bool)) else None
