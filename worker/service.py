"""What the API does with jobs and images, without HTTP: validate, store, queue, read, cancel.

Submissions are validated synchronously against the registry (method, model,
params, input slots, uploaded image ids), so a bad job is refused before it
is queued. Identical submissions (same content hash of method, model,
canonical params and input ids) share one job unless that job failed or was
cancelled.
"""

import hashlib
import json
from contextlib import contextmanager
from typing import Any

from kombu.exceptions import OperationalError

from engine.errors import UnsupportedModel
from engine.models import get_spec
from engine.registry import get_method
from engine.run import check_inputs, parse_params
from worker.jobs import REDIS_ERRORS, Job, JobStore, connect, new_job_id
from worker.queue_app import create_celery, send_job, terminate_job
from worker.settings import Settings
from worker.storage import make_storage
from worker.uploads import require_images
from worker import webhooks

BROKER_ERRORS = (*REDIS_ERRORS, OperationalError)


class BrokerUnavailable(Exception):
    """Redis (broker and job records) cannot be reached."""


def content_hash(method: str, model: str, params: dict, inputs: dict) -> str:
    canonical = json.dumps({"method": method, "model": model, "params": params, "inputs": inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobService:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.redis = connect(settings)
        self.jobs = JobStore(self.redis, settings.job_ttl_seconds)
        self.storage = make_storage(settings)
        self.celery = create_celery(settings)

    def submit(
        self,
        method_name: str,
        model_name: str,
        inputs: dict[str, str | list[str]],
        params: dict[str, Any],
        deadline_seconds: float | None = None,
        webhook: dict | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job (or find its identical twin); returns the job and whether it is new.

        A job with a deadline or a webhook is only ever the twin of one with the same
        deadline and webhook (both are part of its content hash).
        """
        method = get_method(method_name)
        spec = get_spec(model_name)
        parsed = parse_params(method, params).model_dump(mode="json")
        check_inputs(method, inputs)
        if method.needs_classifier and spec.labels is None:
            raise UnsupportedModel(f"method {method.name!r} needs a classifier; model {spec.name!r} has no classifier head")
        webhooks.check_request(webhook, self.settings)
        options = {"deadline_seconds": deadline_seconds, "webhook": webhook}
        digest = content_hash(method.name, spec.name, parsed, inputs)
        if deadline_seconds is not None or webhook is not None:
            digest = hashlib.sha256(f"{digest}:{json.dumps(options, sort_keys=True)}".encode()).hexdigest()
        job = Job(
            id=new_job_id(),
            method=method.name,
            model=spec.name,
            queue=method.queue,
            params=parsed,
            inputs=inputs,
            content_hash=digest,
            webhook=webhook,
        )
        if deadline_seconds is not None:
            job.deadline_at = job.created_at + deadline_seconds
        require_images(self.storage, job.input_ids())
        with broker_errors():
            job, created = self.jobs.create(job)
        if created:
            try:
                send_job(self.celery, job.id, job.queue)
            except BROKER_ERRORS as exc:
                try:
                    self.jobs.remove(job.id)
                except BROKER_ERRORS:
                    pass  # the record expires; the job was never sent
                raise BrokerUnavailable(f"the job queue is unreachable: {exc}") from exc
        return job, created

    def get(self, job_id: str) -> Job | None:
        with broker_errors():
            return self.jobs.get(job_id)

    def list(self, state: str | None, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
        with broker_errors():
            return self.jobs.list(state, limit, cursor)

    def cancel(self, job_id: str) -> tuple[str, Job | None]:
        """Cancel a queued job, ask a running one to stop, or, asked before and past the grace
        period, end its process: returns "cancelled", "requested", "terminated", "finished" or "missing"."""
        with broker_errors():
            outcome = self.jobs.cancel(job_id, self.settings.cancel_grace_seconds)
            if outcome == "terminate":
                terminate_job(self.celery, job_id)
                outcome = "terminated"
            job = self.jobs.get(job_id)
            if outcome in ("cancelled", "terminated"):
                webhooks.enqueue(self.celery, job, "completed")
            return outcome, job

    def ping(self) -> None:
        with broker_errors():
            self.jobs.ping()


@contextmanager
def broker_errors():
    """Turn Redis/kombu connection errors into BrokerUnavailable."""
    try:
        yield
    except BROKER_ERRORS as exc:
        raise BrokerUnavailable(f"the job queue is unreachable: {exc}") from exc
