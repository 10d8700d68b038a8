"""``scripts/serve`` keeps its state and its children: the embedded Redis killed with -9, the job worker
killed with -9, and the whole launcher stopped and started again on the same ``--var`` lose no API key,
registered model, finished job or artifact; each time a new job runs, and a job in flight when Redis
dies still ends. Real processes throughout: the launcher, redis-server, Celery, uvicorn."""

import io
import json
import os
import re
import signal

import httpx
import pytest
from redis import Redis

from tests.e2e.servers import Launcher, alive, children_of, wait_for
from tests.model_files import metadata, onnx_bytes, tiny_net

pytestmark = pytest.mark.slow

ADMIN_KEY = "test-admin-key-of-the-launcher-0123456789"
MODEL, LABELS = "tiny-kept", ["ant", "bee", "cat", "dog"]
ENDED = {"succeeded", "failed", "cancelled"}


class Served:
    """The launcher, an admin client (it registered MODEL), a tenant's submit key, and what they made."""

    def __init__(self, launcher: Launcher, picture: bytes):
        self.launcher, self.picture = launcher, picture
        self.admin = httpx.Client(base_url=launcher.url, headers={"X-API-Key": ADMIN_KEY}, timeout=30)
        made = self.admin.post("/v1/keys", json={"scope": "submit", "name": "survivor"})
        assert made.status_code == 201, made.text
        self.tenant = httpx.Client(base_url=launcher.url, headers={"X-API-Key": made.json()["key"]}, timeout=30)
        registered = self.admin.post("/v1/models", files={"file": (MODEL, onnx_bytes(tiny_net(), (64, 64)), "application/octet-stream")},
                                     data={"metadata": json.dumps(metadata(MODEL, (64, 64), LABELS))})
        assert registered.status_code == 201, registered.text
        self.model_sha256 = registered.json()["sha256"]
        self.image, self.admin_image = upload(self.tenant, picture), upload(self.admin, picture)
        self.tenant_job = run(self.tenant, "classify", "efficientnet_lite0", self.image, {"top_k": 1})
        self.model_job = run(self.admin, "saliency", MODEL, self.admin_image, {})
        self.artifact = self.admin.get(main_artifact(self.model_job)).content
        self.new_jobs = 0

    def assert_nothing_lost(self) -> None:
        self.launcher.wait_ready()
        # the tenant's key still authenticates, and its finished job is still its own
        assert self.tenant.get(f"/v1/jobs/{self.tenant_job['id']}").json() == self.tenant_job
        # the registered model is still listed, described by the same file, and answers inline
        listed = {model["name"]: model for model in self.admin.get("/v1/models").json()["models"]}
        assert listed[MODEL]["sha256"] == self.model_sha256
        answer = self.admin.post("/v1/classify", files={"image": ("p.png", self.picture, "image/png")}, data={"model": MODEL})
        assert answer.status_code == 200, answer.text
        assert {entry["label"] for entry in answer.json()["data"]["top"]} == set(LABELS)
        # the job on it, and its artifact, byte for byte
        assert self.admin.get(f"/v1/jobs/{self.model_job['id']}").json() == self.model_job
        assert self.admin.get(main_artifact(self.model_job)).content == self.artifact
        # and new jobs run (new params, so neither is answered from a finished twin)
        self.new_jobs += 1
        for client, model, image in ((self.tenant, "efficientnet_lite0", self.image), (self.admin, MODEL, self.admin_image)):
            job = run(client, "classify", model, image, {"top_k": 1 + self.new_jobs})
            assert job["deliveries"] == 1 and len(job["result"]["top"]) == 1 + self.new_jobs


def upload(client: httpx.Client, picture: bytes) -> str:
    response = client.post("/v1/images", files={"file": ("p.png", picture, "image/png")})
    assert response.status_code in (200, 201), response.text
    return response.json()["id"]


def submit(client: httpx.Client, method: str, model: str, image: str, params: dict) -> str:
    response = client.post("/v1/jobs", json={"method": method, "model": model, "inputs": {"image": image}, "params": params})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job_where(client: httpx.Client, job_id: str, predicate) -> dict | None:
    """The job if it satisfies ``predicate``; None meanwhile, and while the API answers 503 (Redis down)."""
    response = client.get(f"/v1/jobs/{job_id}")
    return response.json() if response.status_code == 200 and predicate(response.json()) else None


def wait_ended(client: httpx.Client, job_id: str, timeout: float = 120) -> dict:
    return wait_for(lambda: job_where(client, job_id, lambda job: job["state"] in ENDED), timeout, f"job {job_id}", interval=0.3)


def run(client: httpx.Client, method: str, model: str, image: str, params: dict) -> dict:
    job = wait_ended(client, submit(client, method, model, image, params))
    assert job["state"] == "succeeded", job
    return job


def main_artifact(job: dict) -> str:
    return next(artifact["url"] for artifact in job["artifacts"] if artifact["main"])


def restarted(launcher: Launcher, name: str, old_pid: int) -> int:
    def new_child() -> dict[str, int] | None:
        assert launcher.process.poll() is None, f"the launcher stopped:\n{launcher.log()[-2000:]}"
        found = launcher.children()
        return found if found.get(name) not in (None, old_pid) else None

    children = wait_for(new_child, 30, f"a new {name}")
    assert f"ConvLens: {name} was killed by SIGKILL" in launcher.log()
    return children[name]


@pytest.fixture(scope="module")
def served(tmp_path_factory, chelsea):
    tmp = tmp_path_factory.mktemp("serve-survives")
    # Workers heartbeat every second and reap every 2 s, so a job whose worker lost Redis is requeued within
    # seconds (by default within 60 s): the mechanism is the same, the test shorter.
    env = {"CONVLENS_ADMIN_KEY": ADMIN_KEY, "CONVLENS_DEVICE": "cpu", "CONVLENS_HEARTBEAT_SECONDS": "1",
           "CONVLENS_REDELIVERY_CHECK_SECONDS": "2"}
    launcher = Launcher(tmp / "var", tmp / "serve.log", env).start()
    buffer = io.BytesIO()
    chelsea.resize((96, 64)).save(buffer, format="PNG")
    try:
        yield Served(launcher, buffer.getvalue())
    finally:
        launcher.stop()


def test_redis_killed_with_9_comes_back_on_its_port_with_everything_and_the_job_in_flight_ends(served):
    launcher = served.launcher
    port = re.search(r"broker redis://127\.0\.0\.1:(\d+)/", launcher.log()).group(1)
    in_flight = submit(served.tenant, "deepdream", "efficientnet_lite0", served.image, {"steps": 100, "octaves": 1, "max_side": 128})
    wait_for(lambda: job_where(served.tenant, in_flight, lambda job: (job.get("progress") or {}).get("step", 0) >= 2), 60, "the job to run")
    before = launcher.children()
    os.kill(before["redis"], signal.SIGKILL)
    redis = restarted(launcher, "redis", before["redis"])
    launcher.wait_ready()
    assert Redis(port=int(port)).info()["process_id"] == redis  # on the port every other child holds in its URL
    assert {name: pid for name, pid in launcher.children().items() if name != "redis"} == {
        name: pid for name, pid in before.items() if name != "redis"}  # they reconnected; none was restarted
    served.assert_nothing_lost()
    ended = wait_ended(served.tenant, in_flight, timeout=90)
    assert ended["state"] == "succeeded" or (ended["state"] == "failed" and ended["error"]["code"] and ended["error"]["message"]), ended


def test_the_job_worker_killed_with_9_is_started_again_alone_and_takes_new_jobs(served):
    launcher = served.launcher
    before = launcher.children()
    pool = children_of(before["worker"])
    os.kill(before["worker"], signal.SIGKILL)  # the Celery main process: Celery cannot restart it itself
    restarted(launcher, "worker", before["worker"])
    wait_for(lambda: not any(alive(pid) for pid in pool), 10, "the dead worker's pool child to be stopped")  # never two workers
    served.assert_nothing_lost()


def test_a_full_restart_on_the_same_var_keeps_everything(served):
    launcher = served.launcher
    children = launcher.children()
    assert launcher.terminate() == 0
    assert not any(alive(pid) for pid in children.values())
    launcher.start()
    served.assert_nothing_lost()
