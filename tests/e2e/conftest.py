"""Fixtures for end-to-end job tests: real Redis, a real Celery worker process, real S3 (moto)."""

import io
import time
from dataclasses import dataclass

import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from tests.e2e.servers import CeleryWorker, LiveAPI, RedisServer, S3Server, s3_env
from worker.jobs import FINISHED
from api.settings import Settings

PLUGINS = "tests.e2e.plugins"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    server = S3Server().start()
    yield server
    server.stop()


def stack_env(redis_url: str, storage: str, tmp_dir, s3: S3Server | None, **extra) -> dict[str, str]:
    env = {"CONVLENS_REDIS_URL": redis_url, "CONVLENS_PLUGINS": PLUGINS, "CONVLENS_DEVICE": "cpu", "CONVLENS_OPEN_ACCESS": "true",
           "CONVLENS_PREVIEW_INTERVAL_SECONDS": "0", "CONVLENS_PROGRESS_INTERVAL_SECONDS": "0"}
    if storage == "s3":
        env.update(s3_env(s3, f"convlens-{tmp_dir.name.lower().replace('_', '-')[:40]}"))
    else:
        env.update({"CONVLENS_STORAGE": "filesystem", "CONVLENS_STORAGE_DIR": str(tmp_dir / "storage")})
    env.update({f"CONVLENS_{name.upper()}": str(value) for name, value in extra.items()})
    return env


def settings_from(env: dict[str, str]) -> Settings:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return Settings()


@dataclass
class Stack:
    client: TestClient
    worker: CeleryWorker
    settings: Settings
    env: dict[str, str]

    def upload(self, image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        response = self.client.post("/v1/images", files={"file": ("image.png", buffer.getvalue(), "image/png")})
        assert response.status_code in (200, 201), response.text
        return response.json()["id"]

    def submit(self, method: str, image_id: str, model: str = "efficientnet_lite0", **params):
        return self.client.post("/v1/jobs", json={"method": method, "model": model, "inputs": {"image": image_id}, "params": params})

    def wait(self, job_id: str, timeout: float = 60, until=FINISHED) -> dict:
        return self.poll(job_id, lambda job: job["state"] in until, timeout)

    def poll(self, job_id: str, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/v1/jobs/{job_id}").json()
            if predicate(job):
                return job
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s:\n{self.worker.log()[-3000:]}")


def start_stack(env: dict[str, str], log_path) -> Stack:
    redis.Redis.from_url(env["CONVLENS_REDIS_URL"]).flushdb()
    worker = CeleryWorker(env, log_path).start()
    from api.app import create_app

    settings = settings_from(env)
    return Stack(TestClient(create_app(settings)), worker, settings, env)


@pytest.fixture(scope="module", params=["filesystem", "s3"])
def stack(request, redis_server, s3_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"stack-{request.param}")
    env = stack_env(redis_server.url, request.param, tmp, s3_server)
    stack = start_stack(env, tmp / "worker.log")
    yield stack
    stack.client.close()
    stack.worker.stop()


WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWZvci10ZXN0cy1vbmx5LTMyLWJ5dGVzISE="


@dataclass
class Live:
    """The app on a real loopback port (uvicorn), a job worker and a webhook worker, real Redis."""

    url: str
    settings: Settings
    env: dict[str, str]
    worker: CeleryWorker
    hooks_worker: CeleryWorker


@pytest.fixture(scope="session")
def live(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    env = stack_env(redis_server.url.replace("/0", "/5"), "filesystem", tmp, None, webhook_secret=WEBHOOK_SECRET,
                    webhook_allow_private="true", webhook_retry_base_seconds="0.2",
                    webhook_progress_interval_seconds="1", inline_threads="2", max_upload_bytes="3000000",
                    max_event_streams="64")  # test_fifty_waiting_requests_hold_no_threads holds 50 waits at once
    redis.Redis.from_url(env["CONVLENS_REDIS_URL"]).flushdb()
    worker = CeleryWorker(env, tmp / "worker.log").start()
    hooks = CeleryWorker(env, tmp / "hooks.log", queues="webhooks", pool="threads", concurrency=4).start()
    from api.app import create_app

    settings = settings_from(env)
    api = LiveAPI(create_app(settings)).start()
    yield Live(api.url, settings, env, worker, hooks)
    api.stop()
    hooks.stop()
    worker.stop()
