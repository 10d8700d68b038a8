"""A client generated from the exported OpenAPI document by a standard generator submits a typed style job."""

import importlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.openapi import openapi_text

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
pytestmark = pytest.mark.slow


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def generated(live, tmp_path_factory):
    """``openapi-python-client generate`` run offline on the document the live app serves."""
    tmp = tmp_path_factory.mktemp("generated")
    document = tmp / "openapi.json"
    document.write_text(openapi_text(create_app(live.settings)))
    assert json.loads(document.read_text()) == httpx.get(f"{live.url}/openapi.json").json()
    run = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(document), "--meta", "none", "--output-path", str(tmp / "convlens_gen")],
        capture_output=True, text=True, timeout=120, cwd=tmp,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    sys.path.insert(0, str(tmp))
    try:
        yield importlib.import_module("convlens_gen")
    finally:
        sys.path.remove(str(tmp))


def test_generated_client_submits_a_typed_style_transfer_job(live, generated, chelsea, coffee):
    from convlens_gen.api.jobs import get_job, submit_job
    from convlens_gen.models import StyleTransferJobInputs, StyleTransferJobRequest, StyleTransferParams
    from convlens_gen.models.style_transfer_params_optimizer import StyleTransferParamsOptimizer

    ids = [httpx.post(f"{live.url}/v1/images", content=png(image.resize((48, 32)))).json()["id"] for image in (chelsea, coffee)]
    client = generated.Client(base_url=live.url, timeout=30)
    request = StyleTransferJobRequest(
        method="style_transfer",
        model="vgg19",
        inputs=StyleTransferJobInputs(content=ids[0], style=[ids[1]]),
        params=StyleTransferParams(max_side=32, steps=3, scales=1, coarse_steps=1, optimizer=StyleTransferParamsOptimizer.ADAM),
    )
    answer = submit_job.sync_detailed(client=client, body=request)
    assert answer.status_code in (200, 202), answer.content
    job = answer.parsed
    assert job.method == "style_transfer" and job.params["optimizer"] == "adam" and job.params["steps"] == 3

    deadline = time.monotonic() + 120
    while job.state in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = get_job.sync(job.id, client=client)
    assert job.state == "succeeded", job
    assert job.progress.step == job.progress.total == 3
    main = [artifact for artifact in job.artifacts if artifact.main]
    assert [artifact.name for artifact in main] == ["image.png"] and main[0].media_type == "image/png"
    picture = httpx.get(f"{live.url}{main[0].url}")
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")


def test_generated_client_reads_problem_documents(live, generated):
    from convlens_gen.api.jobs import get_job
    from convlens_gen.models import ProblemDetails

    answer = get_job.sync_detailed("0123456789abcdef01234567", client=generated.Client(base_url=live.url))
    assert answer.status_code == 404
    assert isinstance(answer.parsed, ProblemDetails) and answer.parsed.code == "unknown_job"
