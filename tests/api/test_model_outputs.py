"""A registered model whose outputs are NaN for some pictures: the same clear 422 inline and as a job, a
normal answer for the others (real Redis; the job run by the worker's own code in this process)."""

from types import SimpleNamespace

from PIL import Image

from tests.model_files import BrightIsNaN, metadata, onnx_bytes, register, registry_client  # noqa: F401
from tests.pictures import encode
from worker import tasks
from worker.jobs import JobStore, connect

SIZE = (32, 32)
LABELS = ["a", "b", "c", "d"]
DARK, BRIGHT = encode(Image.new("RGB", SIZE, "black")), encode(Image.new("RGB", SIZE, "white"))


def classify(client, picture: bytes):
    return client.post("/v1/classify", files={"image": ("p.png", picture)}, data={"model": "bright-is-nan"})


def test_non_finite_outputs_get_the_same_answer_inline_and_as_a_job(registry_client):
    client = registry_client
    assert register(client, "bright-is-nan", onnx_bytes(BrightIsNaN(), SIZE), metadata("bright-is-nan", SIZE, LABELS)).status_code == 201
    assert classify(client, DARK).status_code == 200
    inline = classify(client, BRIGHT)
    assert inline.status_code == 422 and inline.json()["code"] == "non_finite_output", inline.text
    assert "NaN or infinite" in inline.json()["detail"] and "data.top[0].probability" in inline.json()["detail"]

    image = client.post("/v1/images", files={"file": ("bright.png", BRIGHT)}).json()["id"]
    job = client.post("/v1/jobs", json={"method": "classify", "model": "bright-is-nan", "inputs": {"image": image}}).json()
    settings = client.app.state.settings
    store = JobStore(connect(settings), settings.job_ttl_seconds)
    store.start(job["id"], 3, "test:1")
    task = SimpleNamespace(jobs=store, settings=settings, storage=client.app.state.storage, app=None, models=client.app.state.model_store())
    assert tasks._run(task, store.get(job["id"]), 1) == "failed"
    error = client.get(f"/v1/jobs/{job['id']}").json()["error"]
    assert error == {"code": "non_finite_output", "message": inline.json()["detail"]}


def test_a_model_whose_outputs_are_not_finite_for_a_plain_picture_is_refused_at_registration(registry_client):
    class AlwaysNaN(BrightIsNaN):
        def forward(self, x):
            return super().forward(x) * float("nan")

    answer = register(registry_client, "always-nan", onnx_bytes(AlwaysNaN(), SIZE), metadata("always-nan", SIZE, LABELS))
    assert answer.status_code == 422 and answer.json()["code"] == "non_finite_output", answer.text
