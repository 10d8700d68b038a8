"""SIGTERM to the API (uvicorn with a graceful-shutdown timeout) lets in-flight inline calls finish."""

import base64
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
from PIL import Image

from tests.e2e.servers import ROOT, free_port, wait_for
from tests.pictures import encode


@pytest.mark.slow
def test_sigterm_finishes_the_inline_call_in_flight_then_exits(tmp_path):
    port, marker = free_port(), tmp_path / "running"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CONVLENS_OPEN_ACCESS": "true",
           "CONVLENS_PLUGINS": "tests.api.slow_plugin", "CONVLENS_DEVICE": "cpu", "CONVLENS_TEST_NAP_MARKER": str(marker),
           "CONVLENS_STORAGE_DIR": str(tmp_path / "storage"), "CONVLENS_WARM_MODELS": '["efficientnet_lite0"]'}
    log = open(tmp_path / "api.log", "wb")
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port),
                            "--timeout-graceful-shutdown", "20"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(f"{base}/healthz"), 90, "the API")
        picture = base64.b64encode(encode(Image.new("RGB", (32, 32), "teal"))).decode()
        call = {"model": "efficientnet_lite0", "params": {"seconds": 3}, "inputs": {"image": {"base64": picture}}}
        answers = []
        client = threading.Thread(target=lambda: answers.append(httpx.post(f"{base}/v1/nap", json=call, timeout=60)))
        client.start()
        wait_for(marker.exists, 30, "the inline call to start")
        stopped_at = time.monotonic()
        api.send_signal(signal.SIGTERM)
        wait_for(lambda: not _answers(f"{base}/healthz"), 5, "the API to stop taking new connections")
        client.join(30)
        assert api.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down cleanly
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        assert b"Finished server process" in (tmp_path / "api.log").read_bytes()
        assert answers[0].json()["data"]["slept"] == 3
        assert time.monotonic() - stopped_at >= 2.5  # it waited for the call rather than cutting it
    finally:
        if api.poll() is None:
            api.kill()
        api.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False
