"""What the API does with jobs and images, without HTTP: validate, store, queue, read, cancel.

Submissions are prepared as every call is (:func:`engine.run.prepare`: method,
the model as the tenant sees it, params, input slots, support and the
estimated cost against the job caps) and their uploaded image ids checked, so
a bad job is refused before it is queued. Identical submissions of one tenant
(same content hash of method, model identity, canonical params, input ids,
deadline and webhook) share one job unless that job failed, was cancelled or
aborted. Every call takes the tenant it acts for: another tenant's job is not found.
"""

import hashlib
import json
from typing import Any

from engine.models.zoo import ModelSource
from engine.run import picture_counts, prepare, shape_inputs
from worker.broker import BROKER_ERRORS, BrokerUnavailable, broker_errors
from worker.jobs import Job, JobStore, new_job_id
from worker.queue_app import create_celery, send_job, terminate_job
from api.settings import Settings
from worker.storage import Storage
from worker.uploads import require_images
from worker import webhooks




def content_hash(method: str, model: str, params: dict, inputs: dict) -> str:
    """The hash identical submissions share (``model`` is the model's identity, so a name that now means another file differs)."""
    canonical = json.dumps({"method": method, "model": model, "params": params, "inputs": inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class JobService:
    def __init__(self, settings: Settings, storage: Storage, redis, models: ModelSource):
        self.settings = settings
        self.models = models  # finds the tenants' registered models
        self.redis = redis
        self.jobs = JobStore(self.redis, settings.job_ttl_seconds, heartbeat_seconds=settings.heartbeat_seconds, unsent_seconds=settings.unsent_job_seconds)
        self.storage = storage
        self.celery = create_celery(settings)

    def submit(
        self,
        method_name: str,
        model_name: str,
        inputs: dict[str, str | list[str]],
        params: dict[str, Any],
        tenant: str,
        request_id: str | None = None,
        max_active: int = 0,
        deadline_seconds: float | None = None,
        webhook: dict | None = None,
        max_stored_bytes: int = 0,
        input_names: dict[str, list[str]] | None = None,
    ) -> tuple[Job, bool]:
        """Queue a job of ``tenant`` (or find its identical twin); returns the job and whether it is new.

        JobQuotaExceeded when the tenant already has ``max_active`` jobs queued or running.
        What the job keeps (a trained style model) counts against ``max_stored_bytes``.
        A job with a deadline or a webhook is only ever the twin of one with the same
        deadline and webhook (both are part of its content hash). ``input_names`` (a
        collection's names for its pictures, by slot) name them in the answer, so they count too.
        """
        call = prepare(method_name, model_name, params, picture_counts(inputs), tenant, self.settings.job_caps(), self.models)
        method, spec, parsed = call.method, call.spec, call.params.model_dump(mode="json")
        inputs = shape_inputs(method, inputs)
        webhooks.check_request(webhook, self.settings)
        options = {"deadline_seconds": deadline_seconds, "webhook": webhook, "input_names": input_names or None}
        digest = content_hash(method.name, spec.identity, parsed, inputs)
        if any(value is not None for value in options.values()):
            digest = hashlib.sha256(f"{digest}:{json.dumps(options, sort_keys=True)}".encode()).hexdigest()
        job = Job(
            id=new_job_id(),
            method=method.name,
            model=spec.name,
            queue=method.queue,
            params=parsed,
            inputs=inputs,
            content_hash=digest,
            tenant=tenant,
            request_id=request_id,
            webhook=webhook,
            max_stored_bytes=max_stored_bytes,
            input_names=input_names or None,
        )
        if deadline_seconds is not None:
            job.deadline_at = job.created_at + deadline_seconds
        require_images(self.storage, job.input_ids(), tenant)
        with broker_errors():
            job, created = self.jobs.create(job, max_active)
        if created:
            try:
                send_job(self.celery, job.id, job.queue)
            except BROKER_ERRORS as exc:
                try:
                    self.jobs.remove(job.id)
                except BROKER_ERRORS:
                    pass  # its dedup key expires within seconds; the reaper sends the job or it expires
                raise BrokerUnavailable(f"the job queue is unreachable: {exc}") from exc
            try:
                self.jobs.mark_sent(job)
            except BROKER_ERRORS:
                pass  # sent: the job runs; only its dedup key stays short-lived
        return job, created

    def get(self, job_id: str, tenant: str) -> Job | None:
        with broker_errors():
            return self.jobs.get_owned(job_id, tenant)

    def queue_info(self, job: Job) -> dict | None:
        """A queued job's position and estimated wait (:meth:`worker.jobs.JobStore.queue_info`); None when not queued."""
        with broker_errors():
            return self.jobs.queue_info(job)

    def list(self, tenant: str, state: str | None, limit: int, cursor: str | None) -> tuple[list[Job], str | None]:
        with broker_errors():
            return self.jobs.list(tenant, state, limit, cursor)

    def cancel(self, job_id: str, tenant: str) -> tuple[str, Job | None]:
        """Cancel a queued job, ask a running one to stop, or, asked before and past the grace
        period, end its process: returns "cancelled", "requested", "terminated", "finished" or "missing"."""
        with broker_errors():
            outcome = self.jobs.cancel(job_id, tenant, self.settings.cancel_grace_seconds)
            if outcome == "terminate":
                terminate_job(self.celery, job_id)
                outcome = "terminated"
            job = self.jobs.get_owned(job_id, tenant)
            if outcome in ("cancelled", "terminated"):
                webhooks.enqueue(self.celery, self.jobs, job, "completed")
            return outcome, job

    def ping(self) -> None:
        with broker_errors():
            self.jobs.ping()
