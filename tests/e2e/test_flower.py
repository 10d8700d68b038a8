"""The compose file's Flower command, pointed at a real broker, sees the real worker and the jobs it ran."""

import os
import subprocess
import sys

import httpx
import pytest
import yaml

from tests.e2e.conftest import Stack, settings_from, stack_env
from tests.e2e.servers import ROOT, CeleryWorker, free_port, wait_for

flower = pytest.importorskip("flower")


@pytest.mark.slow
def test_flower_from_the_compose_profile_sees_workers_and_tasks(redis_server, s3_server, tmp_path, chelsea):
    from fastapi.testclient import TestClient

    from api.app import create_app

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    command = compose["flower"]["command"]
    worker_command = compose["worker"]["command"]
    assert compose["flower"]["profiles"] == ["monitoring"] and "-E" in worker_command
    broker = next(arg for arg in command if arg.startswith("--broker="))
    assert broker == f"--broker={compose['worker']['environment']['CONVLENS_REDIS_URL']}"  # the jobs' own broker
    port = free_port()
    args = [f"--broker={redis_server.url}" if arg == broker else arg for arg in command]
    args = [f"--port={port}" if arg.startswith("--port=") else arg for arg in args] + ["--address=127.0.0.1"]

    env = stack_env(redis_server.url, "filesystem", tmp_path, s3_server)
    worker = CeleryWorker(env, tmp_path / "worker.log", extra_args=("-E",)).start()
    log = open(tmp_path / "flower.log", "wb")
    monitor = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"})
    base = f"http://127.0.0.1:{port}"
    try:
        stack = Stack(TestClient(create_app(settings_from(env))), worker, settings_from(env), env)
        wait_for(lambda: _get(f"{base}/healthcheck") == "OK", 60, "Flower")
        workers = wait_for(lambda: _json(f"{base}/api/workers?refresh=1"), 30, "Flower to list the worker")
        assert worker.name in workers
        job = stack.submit("classify", stack.upload(chelsea.resize((64, 48))), top_k=1).json()
        assert stack.wait(job["id"])["state"] == "succeeded"
        tasks = wait_for(lambda: _json(f"{base}/api/tasks"), 30, "Flower to see the task")
        assert any(task.get("args", "").find(job["id"]) >= 0 and task["state"] == "SUCCESS" for task in tasks.values())
    finally:
        monitor.terminate()
        monitor.wait(10)
        log.close()
        worker.stop()


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None


def _json(url: str):
    try:
        answer = httpx.get(url, timeout=5)
        return answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
