"""The one-command run (api.serve, what scripts/serve executes): embedded Redis, worker, API; clean stop."""

import io
import time

import httpx
import pytest

from tests.e2e.servers import Launcher, alive, wait_for


@pytest.mark.slow
def test_serve_runs_a_job_with_nothing_installed_and_stops_every_child(tmp_path, chelsea):
    launcher = Launcher(tmp_path / "var", tmp_path / "serve.log", {}).start()
    try:
        api = httpx.Client(base_url=launcher.url, timeout=10)
        buffer = io.BytesIO()
        chelsea.resize((64, 64)).save(buffer, format="PNG")
        image_id = api.post("/v1/images", content=buffer.getvalue(), headers={"content-type": "image/png"}).json()["id"]
        job = api.post("/v1/jobs", json={"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image_id}}).json()
        done = wait_for(lambda: (j := api.get(f"/v1/jobs/{job['id']}").json())["state"] in {"succeeded", "failed"} and j, 120, "the job")
        assert done["state"] == "succeeded", done
        children = launcher.children()
        assert set(children) == {"redis", "worker", "webhooks", "api"}
        assert launcher.terminate(60) == 0
        time.sleep(0.5)
        assert [pid for pid in children.values() if alive(pid)] == []
        assert (tmp_path / "var" / "storage" / "images").is_dir()  # stored files default to <var>/storage
    finally:
        launcher.stop()
