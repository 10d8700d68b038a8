"""The Python client (convlens_client) and its CLI against the real app on loopback, real workers."""

import asyncio
import inspect
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from PIL import Image

from convlens_client import AsyncConvLens, ConvLens, errors
from convlens_client._http import RetryPolicy
from convlens_client.client import _Bar
from convlens_client.models import Job, Progress
from tests.e2e.servers import ROOT, LiveAPI, free_port
from tests.e2e.conftest import settings_from

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}
STYLE = {"max_side": 32, "steps": 4, "scales": 1, "coarse_steps": 1, "optimizer": "adam", "preview_every": 1}


@pytest.fixture(scope="module")
def client(live):
    with ConvLens(live.url, retry=RetryPolicy(attempts=2, base=0.1)) as client:
        yield client


@pytest.fixture(scope="module")
def photos(tmp_path_factory, chelsea, coffee):
    folder = tmp_path_factory.mktemp("photos")
    chelsea.save(folder / "cat.jpg", quality=92)
    coffee.resize((64, 48)).save(folder / "coffee.png")
    chelsea.resize((48, 32)).save(folder / "small_cat.png")
    return folder


def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_catalogue(client):
    assert {"efficientnet_lite0", "vgg19"} <= {model["name"] for model in client.models()}
    methods = {method["name"]: method for method in client.methods()}
    assert methods["saliency"]["inline"] and not methods["style_transfer"]["inline"]


def test_inspect_family_classify_and_activations(client, photos):
    result = client.classify(photos / "cat.jpg", top_k=3)
    assert CAT_CLASSES & {entry["label"] for entry in result.data["top"]}
    layers = client.model("efficientnet_lite0")["layers"]
    maps = client.activations(photos / "cat.jpg", layer=layers[3]["name"], max_channels=4)
    main = maps.artifacts[maps.main]
    assert main.content is None and main.url  # linked by default, downloaded on demand
    assert picture(client.fetch(main)).size == (main.width, main.height)


def test_attribute_family_saliency_embedded_and_gradcam_linked(client, photos, tmp_path):
    result = client.attribute("saliency", photos / "cat.jpg", embed="heatmap,overlay")
    assert result.artifacts["overlay"].content is not None and result.artifacts["heatmap"].content is not None
    overlay = picture(result.artifacts["overlay"].content)
    cam = client.gradcam(Image.open(photos / "cat.jpg"))
    saved = client.save(cam.artifacts["overlay"], tmp_path / "cam.png")
    assert picture(saved.read_bytes()).size == overlay.size


def test_synthesise_family_style_job_awaited_with_progress_callbacks(client, photos, capsys):
    job = client.style(photos / "small_cat.png", photos / "coffee.png", **STYLE)
    seen = []
    final = client.wait(job, progress=True, on_progress=lambda update: seen.append((update.state, update.progress)))
    assert final.state == "succeeded"
    steps = [progress.step for _state, progress in seen if progress is not None]
    assert steps == sorted(steps) and steps[-1] == STYLE["steps"] and len(set(steps)) >= 2
    assert seen[-1][0] == "succeeded"
    bar = capsys.readouterr().err
    assert "style_transfer" in bar and f"{STYLE['steps']}/{STYLE['steps']}" in bar
    image = picture(client.download(final))
    assert image.format == "PNG" and max(image.size) == 32


def test_the_progress_bar_starts_where_the_job_is(capsys):
    """A job met at step 22 of 200 is not 22 steps in no time: the bar's rates are the job's (~5 step/s here)."""
    def job(step: int) -> Job:
        return Job("18ed3fda142f008f5452b2e6", "running", "style_transfer", "vgg19", {}, {}, Progress(step, 200), None, None, [])

    bar = _Bar("18ed3fda142f008f5452b2e6", enabled=True)
    bar.update(job(22))
    for step in (23, 24, 25):
        time.sleep(0.2)
        bar.update(job(step))
    bar.close()
    shown = capsys.readouterr().err
    rates = [float(rate.replace(",", "")) for rate in re.findall(r"([\d.,]+)step/s", shown)]
    assert "25/200" in shown and rates and max(rates) < 20, shown


def test_a_queued_job_shows_its_place_and_estimate_each_time_they_change(capsys):
    def job(body: dict | None) -> Job:
        return Job.from_json({"id": "18ed3fda142f008f5452b2e6", "state": "queued", "method": "style_transfer", "model": "vgg19",
                              "queue": body})

    assert job(None).queue is None
    bar = _Bar("18ed3fda142f008f5452b2e6", enabled=True)
    for body in ({"position": 2, "estimated_wait_seconds": 61.4, "based_on": 5}, {"position": 2, "estimated_wait_seconds": 61.2, "based_on": 5},
                 {"position": 1, "estimated_wait_seconds": 30.0, "based_on": 5}, {"position": 1, "estimated_wait_seconds": None, "based_on": 0}):
        bar.update(job(body))
    bar.close()
    assert capsys.readouterr().err.splitlines() == [
        "style_transfer 52b2e6: queued, position 2, about 61 s",
        "style_transfer 52b2e6: queued, position 1, about 30 s",
        "style_transfer 52b2e6: queued, position 1",
    ]


def test_fool_family_as_job_with_prefer_wait(client, photos):
    job = client.submit("fooling_image", {"image": photos / "small_cat.png"}, params={"target_class": 1, "steps": 2}, wait=60)
    assert job.state == "succeeded" and job.finished
    assert picture(client.download(job)).format == "PNG"


def test_async_client_inline_and_job(live, photos):
    async def scenario():
        async with AsyncConvLens(live.url) as client:
            result = await client.inline("saliency", {"image": photos / "cat.jpg"}, embed="main")
            job = await client.submit("probe_steps", {"image": photos / "small_cat.png"}, params={"steps": 3, "size": 32})
            seen = []
            final = await client.wait(job, on_progress=lambda update: seen.append(update.progress))
            return result, final, seen, await client.download(final)

    result, final, seen, data = asyncio.run(scenario())
    assert result.artifacts[result.main].content is not None
    assert final.state == "succeeded" and [p.step for p in seen if p][-1] == 3
    assert picture(data).size == (32, 32)


def test_the_async_client_has_every_call_of_the_sync_one_with_the_same_signature():
    def calls(cls) -> dict:
        return {name: member for name, member in vars(cls).items() if not name.startswith("_") and callable(member)}

    sync, awaited = calls(ConvLens), calls(AsyncConvLens)
    assert set(sync) == set(awaited) and len(sync) >= 20
    for name, member in awaited.items():
        assert inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member), name
        assert inspect.signature(member) == inspect.signature(sync[name]), name


def test_async_convenience_calls_answer_as_the_sync_ones_do(client, live, photos, tmp_path):
    async def scenario():
        async with AsyncConvLens(live.url) as aclient:
            described = await aclient.model("efficientnet_lite0")
            top = await aclient.classify(photos / "cat.jpg", top_k=3)
            cam = await aclient.gradcam(photos / "cat.jpg")
            saved = await aclient.save(cam.artifacts["overlay"], tmp_path / "async-cam.png")
            job = await aclient.submit("probe_steps", {"image": photos / "small_cat.png"}, params={"steps": 2, "size": 32})
            states = [update.state async for _event, update in aclient.events(job.id)]
            return described, top, saved, states

    described, top, saved, states = asyncio.run(scenario())
    assert described == client.model("efficientnet_lite0")
    assert top.data["top"] == client.classify(photos / "cat.jpg", top_k=3).data["top"]
    assert picture(saved.read_bytes()).size == picture(client.fetch(client.gradcam(photos / "cat.jpg").artifacts["overlay"])).size
    assert states[-1] == "succeeded"


def test_wait_raises_job_failed_for_a_cancelled_job(client, photos):
    job = client.submit("probe_steps", {"image": photos / "small_cat.png"}, params={"steps": 50, "sleep": 0.2, "size": 32})
    client.cancel(job.id)
    with pytest.raises(errors.JobFailed) as caught:
        client.wait(job)
    assert caught.value.job.state == "cancelled"


def tiny_ico() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="ICO")
    return buffer.getvalue()


def test_each_error_class_is_mapped_from_the_real_problem(client, photos):
    cases = [
        (errors.BadImage, 400, lambda: client.classify(b"not a picture at all")),
        (errors.UnknownModel, 404, lambda: client.classify(photos / "cat.jpg", model="no_such_model")),
        (errors.UnknownMethod, 404, lambda: client.inline("style_transfer", {"image": photos / "cat.jpg"})),
        (errors.UnknownJob, 404, lambda: client.job("0123456789abcdef01234567")),
        (errors.UnknownImage, 404, lambda: client.submit("saliency", {"image": "f" * 32})),
        (errors.UnknownArtifact, 404, lambda: client._send("GET", "/v1/results/nope/overlay")),
        (errors.NotAcceptable, 406, lambda: client._send("POST", "/v1/classify", headers={"accept": "text/html"},
                                                         files={"image": ("c.png", (photos / "coffee.png").read_bytes())})),
        (errors.PayloadTooLarge, 413, lambda: client.upload_image(b"\0" * 3_500_000)),
        (errors.UnsupportedMediaType, 415, lambda: client.classify(tiny_ico())),
        (errors.InvalidParams, 422, lambda: client.classify(photos / "cat.jpg", top_k=-3)),
        (errors.InvalidRequest, 422, lambda: client.submit("saliency", {"image": "f" * 32}, params=None, deadline_seconds=-1)),
    ]
    for kind, status, call in cases:
        with pytest.raises(kind) as caught:
            call()
        assert caught.value.status == status, (kind, caught.value)
        assert caught.value.problem["status"] == status and caught.value.detail
    finished = client.submit("probe_steps", {"image": photos / "small_cat.png"}, params={"steps": 1, "size": 32}, wait=30)
    with pytest.raises(errors.JobFinished) as caught:
        client.cancel(finished.id)
    assert caught.value.status == 409 and isinstance(caught.value, errors.Conflict)


def test_unavailable_broker_is_retried_after_retry_after_then_raised(live, tmp_path):
    """A second real app, whose Redis is not there and which has no webhook secret."""
    env = {**live.env, "CONVLENS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "CONVLENS_RETRY_AFTER_SECONDS": "1"}
    env.pop("CONVLENS_WEBHOOK_SECRET")
    from api.app import create_app

    api = LiveAPI(create_app(settings_from(env))).start()
    try:
        with ConvLens(api.url, retry=RetryPolicy(attempts=2)) as down:
            started = time.monotonic()
            with pytest.raises(errors.Unavailable) as caught:
                down.job("0123456789abcdef01234567")
            assert time.monotonic() - started >= 1.0  # waited Retry-After once, then gave up
        assert caught.value.code == "broker_unavailable" and caught.value.retry_after == 1
        with ConvLens(api.url) as down:
            with pytest.raises(errors.WebhookRefused) as refused:
                down.submit("saliency", {"image": "f" * 32}, webhook={"url": "https://example.com/hook"})
        assert (refused.value.status, refused.value.code) == (422, "webhooks_not_configured")
    finally:
        api.stop()


class Flaky(BaseHTTPRequestHandler):
    """Answers 429 (Retry-After: 1) to the first ``fail`` requests, then 200."""

    fail = 2
    seen: list[float] = []

    def do_GET(self):
        Flaky.seen.append(time.monotonic())
        if len(Flaky.seen) <= Flaky.fail:
            body = json.dumps({"type": "x", "title": "Too Many Requests", "status": 429, "detail": "busy", "code": "busy"})
            self.send_response(429)
            self.send_header("retry-after", "1")
            self.send_header("content-type", "application/problem+json")
        else:
            body = json.dumps({"models": []})
            self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_429_is_retried_honouring_retry_after_and_raised_when_attempts_run_out():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        Flaky.seen.clear()
        with ConvLens(url, retry=RetryPolicy(attempts=3)) as client:
            assert client.models() == []
        gaps = [b - a for a, b in zip(Flaky.seen, Flaky.seen[1:])]
        assert len(Flaky.seen) == 3 and all(gap >= 0.95 for gap in gaps)
        Flaky.seen.clear()
        with ConvLens(url, retry=RetryPolicy(attempts=2)) as client:
            with pytest.raises(errors.RateLimited) as caught:
                client.models()
        assert caught.value.retry_after == 1 and caught.value.code == "busy" and len(Flaky.seen) == 2
    finally:
        server.shutdown()
        server.server_close()


def test_upload_collection_when_the_service_has_collections(client, live, photos):
    probe = httpx.post(f"{live.url}/v1/collections")
    if probe.status_code in (404, 405):
        pytest.skip("this service has no /v1/collections route")
    collection = client.upload_collection([photos / "cat.jpg", photos / "coffee.png"], name="pair")
    assert collection["id"]


def cli(live, *args, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONVLENS_URL": live.url, "PYTHONPATH": str(ROOT / "client")}
    return subprocess.run([sys.executable, "-m", "convlens_client.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_cli_saliency_models_and_style(live, photos, tmp_path):
    saliency = cli(live, "saliency", str(photos / "cat.jpg"), "-o", "map.png", cwd=tmp_path)
    assert saliency.returncode == 0, saliency.stderr
    assert picture((tmp_path / "map.png").read_bytes()).format == "PNG"
    assert "timings" in json.loads(saliency.stdout)

    models = cli(live, "models", cwd=tmp_path)
    assert models.returncode == 0 and "efficientnet_lite0" in models.stdout and "vgg19" in models.stdout

    params = [arg for name, value in STYLE.items() for arg in ("-p", f"{name}={value}")]
    params += ["-p", "seed=7"]  # not the twin of the style job above (that one would be reused, already finished)
    style = cli(live, "style", str(photos / "small_cat.png"), str(photos / "coffee.png"), "--wait", "-o", "out.png", *params, cwd=tmp_path)
    assert style.returncode == 0, style.stderr
    assert max(picture((tmp_path / "out.png").read_bytes()).size) == 32
    assert "100%" in style.stderr  # the tqdm bar reached the end

    refused = cli(live, "classify", str(photos / "cat.jpg"), "-m", "no_such_model", cwd=tmp_path)
    assert refused.returncode == 4 and "unknown_model" in refused.stderr and "Traceback" not in refused.stderr


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
    module, _, function = project["scripts"]["convlens"].partition(":")
    from importlib import import_module

    assert callable(getattr(import_module(module), function))


def test_keys_are_sent_and_refusals_raise_their_class(live, photos):
    """A second real app that needs keys (same Redis): no key 401, a read key 403 on submit, the admin key works."""
    admin_key = "client-test-admin-key-0123456789"
    env = {**live.env, "CONVLENS_OPEN_ACCESS": "false", "CONVLENS_ADMIN_KEY": admin_key}
    from api.app import create_app

    api = LiveAPI(create_app(settings_from(env))).start()
    try:
        with ConvLens(api.url) as anonymous, pytest.raises(errors.Unauthorized) as caught:
            anonymous.models()
        assert caught.value.status == 401 and caught.value.code == "missing_api_key"
        with ConvLens(api.url, api_key=admin_key) as admin:
            assert {"efficientnet_lite0", "vgg19"} <= {model["name"] for model in admin.models()}
            made = admin.http.post("/v1/keys", json={"scope": "read", "name": "client test"})
            assert made.status_code == 201, made.text
        with ConvLens(api.url, api_key=made.json()["key"]) as reader:
            assert reader.models()
            with pytest.raises(errors.Forbidden) as caught:
                reader.classify(photos / "small_cat.png")
        assert caught.value.status == 403 and caught.value.code == "insufficient_scope"
    finally:
        api.stop()


def test_several_pictures_in_one_request_from_the_client_and_the_cli(client, live, photos, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    pictures = [photos / "cat.jpg", tmp_path / "broken.png", photos / "coffee.png"]
    cat, broken, cup = client.each("classify", pictures, {"top_k": 1})
    assert cat.data["top"][0]["label"] in CAT_CLASSES and cup.data["top"][0]["label"] == "espresso"
    assert isinstance(broken, errors.ConvLensError) and broken.code == "not_an_image"
    assert cup.picture == {"position": 2, "id": None, "name": "coffee.png"}

    (tmp_path / "maps").mkdir()
    done = cli(live, "saliency", str(photos / "cat.jpg"), str(photos / "coffee.png"), "-o", "maps", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    maps = tmp_path / "maps"
    assert sorted(p.name for p in maps.iterdir()) == ["cat.png", "coffee.png"]
    assert picture((maps / "coffee.png").read_bytes()).format == "PNG"
