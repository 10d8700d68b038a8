"""The Celery application: Redis broker, queues ``gpu``, ``cpu`` and ``webhooks``, settings for GPU work.

Late acknowledgement with requeue on a lost worker (a job killed with its
worker runs again), one reserved message per process (prefetch 1; run the
worker with ``-c 1`` per GPU), time limits, a visibility timeout longer than
the longest job, and redelivery checks often enough to pick up jobs of a dead
worker. No result backend: job records live in :mod:`worker.jobs`.
"""

from celery import Celery
from kombu import Exchange, Queue

from worker.settings import Settings
from worker import webhooks
from worker.tasks import TASK_NAME, JobTask, run_job_and_notify

QUEUES = ("gpu", "cpu", "webhooks")


def create_celery(settings: Settings) -> Celery:
    app = Celery("convlens", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        task_default_queue="gpu",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_soft_time_limit=settings.job_soft_time_limit,
        task_time_limit=settings.job_time_limit,
        worker_prefetch_multiplier=1,
        worker_max_memory_per_child=settings.worker_max_memory_per_child_kb,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=settings.redis_connect_timeout,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            "unacked_restore_interval": settings.redelivery_check_seconds,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": settings.redis_connect_timeout,
            "socket_timeout": settings.redis_socket_timeout,
        },
    )
    app.task(name=TASK_NAME, bind=True, base=JobTask, settings=settings)(run_job_and_notify)
    app.task(name=webhooks.TASK_NAME, bind=True, base=webhooks.WebhookTask, settings=settings, acks_late=True)(webhooks.deliver_task)
    return app


def send_job(app: Celery, job_id: str, queue: str) -> None:
    """Publish a job id, as the task id too (so it can be revoked by job id); fails fast when the broker is down."""
    app.send_task(
        TASK_NAME,
        args=[job_id],
        task_id=job_id,
        queue=queue,
        retry=True,
        retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
    )


def terminate_job(app: Celery, job_id: str) -> None:
    """Kill the worker process running a job (SIGKILL; the worker starts a fresh one) and drop its message.

    The last resort for a job that ignores cancellation: it dies wherever it
    is, so the job must already be recorded cancelled.
    """
    app.control.revoke(job_id, terminate=True, signal="SIGKILL")
