"""Request ids, JSON request logs and Prometheus metrics, with the broker's part read from a real Redis."""

import json
import logging
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from worker.jobs import connect
from tests.api.conftest import ADMIN_KEY, make_settings
from tests.e2e.servers import free_port
from tests.pictures import encode
from worker.logs import JsonFormatter
from worker.metrics import record_job, record_worker_memory

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PHOTO = encode(Image.new("RGB", (16, 16), "teal"))


def samples(client) -> dict[tuple[str, frozenset], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def test_request_id_is_echoed_or_made_and_logged_as_json(caplog):
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(create_app(settings)) as client:
        logger = logging.getLogger("convlens.requests")
        logger.addHandler(caplog.handler)
        try:
            sent = client.get("/v1/models", headers={"X-Request-ID": "trace-42"})
            made = client.get("/v1/models")
            insane = client.get("/v1/models", headers={"X-Request-ID": "no spaces or\tcontrol; please"})
        finally:
            logger.removeHandler(caplog.handler)
    assert sent.headers["X-Request-ID"] == "trace-42"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", insane.headers["X-Request-ID"])
    lines = [json.loads(JsonFormatter().format(record)) for record in caplog.records]
    first = next(line for line in lines if line["request_id"] == "trace-42")
    assert first["route"] == "/v1/models" and first["status"] == 200 and first["method"] == "GET"
    assert first["duration_ms"] > 0 and first["level"] == "info"


def test_request_latency_is_labelled_by_route_template_and_inline_latency_by_method(client):
    client.get(f"/v1/jobs/{'0' * 24}")
    client.get(f"/v1/jobs/{'1' * 24}")
    answer = client.post("/v1/classify", files={"image": ("p", PHOTO)}, data={"model": "efficientnet_lite0"})
    assert answer.status_code == 200, answer.text
    found = samples(client)
    templated = [labels for (name, labels) in found if name == "convlens_http_request_duration_seconds_count"
                 and dict(labels)["route"].startswith("/v1/jobs/")]
    assert templated and all(dict(labels)["route"] == "/v1/jobs/{job_id}" for labels in templated)  # never raw ids
    inline = {"method": "classify"}
    assert found[("convlens_inline_duration_seconds_count", frozenset(inline.items()))] >= 1
    assert found[("convlens_http_request_duration_seconds_count",
                  frozenset({"method": "POST", "route": "/v1/classify", "status": "200"}.items()))] >= 1


@pytest.fixture
def keyed_client(keyed_settings):
    with TestClient(create_app(keyed_settings)) as client:
        yield client


def test_broker_metrics_queue_depth_jobs_durations_and_worker_memory(keyed_client, keyed_settings):
    image = keyed_client.post("/v1/images", files={"file": ("a.png", PHOTO)}, headers=ADMIN).json()["id"]
    job = {"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image}}
    queued = keyed_client.post("/v1/jobs", json=job, headers={**ADMIN, "X-Request-ID": "trace-job"})
    assert queued.status_code == 202 and queued.json()["request_id"] == "trace-job"  # the id follows into the job
    redis = connect(keyed_settings)
    record_job(redis, "saliency", "succeeded", 3.0)
    record_job(redis, "saliency", "succeeded", 40.0)
    record_job(redis, "saliency", "cancelled", None)
    record_worker_memory(redis, "host:123")
    found = samples(keyed_client)
    assert found[("convlens_broker_up", frozenset())] == 1
    assert found[("convlens_queue_depth", frozenset({"queue": "cpu"}.items()))] == 1  # classify's queue, no worker
    assert found[("convlens_queue_depth", frozenset({"queue": "gpu"}.items()))] == 0
    saliency = frozenset({"method": "saliency"}.items())
    assert found[("convlens_jobs_total", frozenset({"method": "saliency", "state": "succeeded"}.items()))] == 2
    assert found[("convlens_jobs_total", frozenset({"method": "saliency", "state": "cancelled"}.items()))] == 1
    assert found[("convlens_job_duration_seconds_count", saliency)] == 2
    assert found[("convlens_job_duration_seconds_sum", saliency)] == 43.0
    assert found[("convlens_job_duration_seconds_bucket", saliency | {("le", "5.0")})] == 1
    assert found[("convlens_job_duration_seconds_bucket", saliency | {("le", "60.0")})] == 2
    assert found[("convlens_job_duration_seconds_bucket", saliency | {("le", "0.5")})] == 0
    assert found[("convlens_worker_resident_memory_bytes", frozenset({"worker": "host:123"}.items()))] > 10_000_000


def test_metrics_say_when_the_broker_is_down():
    with TestClient(create_app(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))) as client:
        found = samples(client)
    assert found[("convlens_broker_up", frozenset())] == 0
    assert not any(name.startswith("convlens_queue_depth") for name, _ in found)
