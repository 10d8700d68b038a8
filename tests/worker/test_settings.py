"""Settings refuse combinations that would run long jobs twice or never soft-stop them."""

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from worker.queue_app import create_celery
from worker.settings import Settings


def test_visibility_timeout_must_outlast_the_hard_limit():
    with pytest.raises(ValidationError, match="visibility_timeout"):
        Settings(job_time_limit=3600, job_soft_time_limit=3000, visibility_timeout=3600)


def test_soft_limit_must_come_before_the_hard_limit():
    with pytest.raises(ValidationError, match="soft"):
        Settings(job_soft_time_limit=100, job_time_limit=100)


def test_plugins_are_a_comma_separated_list():
    assert Settings(plugins=" a.b, c ,,").plugin_modules() == ["a.b", "c"]


def test_celery_is_configured_for_gpu_work():
    settings = Settings(visibility_timeout=9000, job_time_limit=8000, job_soft_time_limit=7000)
    conf = create_celery(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_cancel_long_running_tasks_on_connection_loss
    assert conf.broker_transport_options["visibility_timeout"] == 9000
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (7000, 8000)
    assert {q.name: q.routing_key for q in conf.task_queues} == {"gpu": "gpu", "cpu": "cpu", "webhooks": "webhooks"}


def test_the_worker_never_imports_the_api():
    """worker/ reads only its own settings; the API's live in api.settings and extend them."""
    code = "import sys, worker.app, worker.tasks; print(sorted(m for m in sys.modules if m == 'api' or m.startswith('api.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "CONVLENS_PLUGINS": ""})
    assert out.stdout.strip() == "[]"


def test_api_settings_extend_the_worker_settings_with_the_same_env_names(monkeypatch):
    from api.settings import Settings as ApiSettings

    monkeypatch.setenv("CONVLENS_INLINE_THREADS", "3")
    monkeypatch.setenv("CONVLENS_JOB_TTL_SECONDS", "120")
    settings = ApiSettings()
    assert (settings.inline_threads, settings.job_ttl_seconds) == (3, 120)
    assert "inline_threads" not in Settings.model_fields
