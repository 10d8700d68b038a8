"""An inline call stops at its next step past the inline time limit (503), and when its client disconnects."""

import base64
import io
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from pydantic import Field

from api.app import create_app
from engine import registry
from engine.errors import Cancelled
from engine.cost import Cost
from engine.params import Params
from engine.registry import Method
from engine.result import Result
from tests.api.conftest import make_settings
from tests.e2e.servers import free_port, wait_for


def _png(picture) -> str:
    buffer = io.BytesIO()
    picture.resize((224, 224)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_call_past_the_inline_time_limit_stops_and_answers_503(chelsea):
    """SmoothGrad with 100 samples, one per pass, takes minutes here (each pass is 0.1-5 s on a shared
    machine); the limit stops it at the sample after 0.3 s."""
    body = {"params": {"samples": 100, "batch_size": 1}, "inputs": {"image": {"base64": _png(chelsea)}}}
    with TestClient(create_app(make_settings(inline_time_limit_seconds=0.3))) as client:
        client.post("/v1/smoothgrad", json={**body, "params": {"samples": 1}})  # loads the model and its folded copy
        start = time.perf_counter()
        response = client.post("/v1/smoothgrad", json=body)
        elapsed = time.perf_counter() - start
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "inline_time_limit"
        assert "0.3 s" in response.json()["detail"] and "POST /v1/jobs" in response.json()["detail"]
        assert elapsed < 60.0
        assert client.app.state.inline_pool.pending == 0  # its thread is free again


class StepParams(Params):
    steps: int = Field(200, ge=1, le=1000)


class Steps:
    """A test method: ``steps`` slow steps with a progress report each; records how it ended."""

    def __init__(self):
        self.done = 0
        self.ended = threading.Event()
        self.stopped_by: Exception | None = None

    def __call__(self, model, inputs, params: StepParams, progress) -> Result:
        try:
            for step in range(1, params.steps + 1):
                time.sleep(0.05)
                self.done = step
                progress(step, params.steps)
        except Cancelled as exc:
            self.stopped_by = exc
            raise
        finally:
            self.ended.set()
        return Result(images={"input": inputs["image"]}, data={"steps": self.done}, main="input")


@pytest.fixture
def steps_method():
    run = Steps()
    registry.METHODS.add("slow_steps", Method(name="slow_steps", summary="Test: slow steps", category="inspect", params=StepParams, run=run,
                                              cost=lambda model, params, images: Cost(params.steps, 0, 0)))
    yield run
    registry.METHODS.remove("slow_steps")


@pytest.fixture
def live_server(steps_method):
    """The app behind a real uvicorn server on a loopback port (a TestClient cannot disconnect)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(make_settings()), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_the_time_limit_stops_a_call_at_its_next_progress_report(steps_method, chelsea):
    body = {"params": {"steps": 200}, "inputs": {"image": {"base64": _png(chelsea)}}}
    with TestClient(create_app(make_settings(inline_time_limit_seconds=0.5))) as client:
        response = client.post("/v1/slow_steps", json=body)
    assert response.status_code == 503 and response.json()["code"] == "inline_time_limit"
    assert type(steps_method.stopped_by).__name__ == "InlineTimeLimit"
    assert steps_method.done < 100  # 0.05 s a step: it stopped near step 10, not after 200


def test_a_client_that_disconnects_stops_its_computation_at_the_next_step(live_server, steps_method, chelsea):
    body = {"params": {"steps": 200}, "inputs": {"image": {"base64": _png(chelsea)}}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live_server}/v1/slow_steps", json=body, timeout=httpx.Timeout(30, read=0.5))
    assert steps_method.ended.wait(5), "the computation went on after its client left"
    assert type(steps_method.stopped_by).__name__ == "ClientGone"
    assert steps_method.done < 100  # 200 steps take 10 s; it stopped within about a second of the disconnect
    # the server still answers
    assert httpx.get(f"{live_server}/healthz", timeout=5).status_code == 200
