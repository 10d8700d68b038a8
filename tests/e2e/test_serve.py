"""The one-command run (api.serve, what scripts/serve executes): embedded Redis, worker, API; clean stop."""

import io
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.e2e.servers import ROOT, free_port, wait_for


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return [int(child) for child in file.read().split()]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_serve_runs_a_job_with_nothing_installed_and_stops_every_child(tmp_path, chelsea):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVLENS_")}
    env.update(CONVLENS_STORAGE_DIR=str(tmp_path / "storage"), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    log = open(tmp_path / "serve.log", "wb")
    launcher = subprocess.Popen([sys.executable, "-m", "api.serve", "--port", str(port), "--var", str(tmp_path / "var")],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        wait_for(lambda: _ready(api) or launcher.poll() is not None, 120, "the API", interval=0.5)
        assert launcher.poll() is None, (tmp_path / "serve.log").read_text()
        buffer = io.BytesIO()
        chelsea.resize((64, 64)).save(buffer, format="PNG")
        image_id = api.post("/v1/images", content=buffer.getvalue(), headers={"content-type": "image/png"}).json()["id"]
        job = api.post("/v1/jobs", json={"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image_id}}).json()
        done = wait_for(lambda: (j := api.get(f"/v1/jobs/{job['id']}").json())["state"] in {"succeeded", "failed"} and j, 120, "the job")
        assert done["state"] == "succeeded", done
        children = children_of(launcher.pid)
        assert len(children) == 4  # redis-server, celery worker, webhook worker, uvicorn
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(60) == 0
        time.sleep(0.5)
        assert [pid for pid in children if alive(pid)] == []
    finally:
        if launcher.poll() is None:
            launcher.kill()
        log.close()


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False
