"""Schemathesis fuzzes every operation of the app's own OpenAPI document, in process, against a real Redis.

At least 1,000 generated requests in all, every operation at least a few
times; the run passes only if no answer is a 5xx and every answer conforms to
the document (status code, content type, headers and body schema).
Schemathesis does generate real (1x1) PNGs and JPEGs; with the pixel limit at
0 every picture is refused (413 ``image_too_large``) right after its header is
read, so no generated call runs a heavy method (occlusion with its default
params takes half a minute on a CPU), while parsing, validation, auth and every
error path are exercised.
"""

import logging
import math

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from engine.result import Result
from tests.api.conftest import ADMIN_KEY
from tests.pictures import encode
from worker.artifacts import store_preview, store_result
from worker.jobs import JobStore, connect
from worker.storage import make_storage

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
TOTAL = 1200


@pytest.mark.slow
def test_every_operation_survives_fuzzing_and_answers_as_documented(keyed_settings, monkeypatch):
    monkeypatch.setattr(logging.getLogger("convlens.requests"), "disabled", True)  # thousands of access lines
    app = create_app(keyed_settings.model_copy(update={"max_image_pixels": 0}))
    with TestClient(app):  # runs the lifespan (inline pool) that schemathesis' own client does not
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        per_operation = max(20, math.ceil(TOTAL / len(operations)))
        sent: dict[str, int] = {}
        failures: list[str] = []
        for operation in operations:
            label = operation.label
            sent[label] = 0

            @given(case=operation.as_strategy())
            @settings(max_examples=per_operation, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def fuzz(case):
                sent[label] += 1
                response = case.call(headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                case.validate_response(response, checks=CHECKS)

            try:
                fuzz()
            except Exception as exc:  # noqa: BLE001 - collected, so one run reports every operation that fails
                failures.append(f"{label}: {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
    assert sum(sent.values()) >= 1000
    assert all(count >= 1 for count in sent.values()) and len(sent) == len(operations)
    # only the probes, with no parameters and no key, have a single possible request
    assert not {label for label, count in sent.items() if count < 5} - {"GET /healthz", "GET /readyz", "GET /metrics"}


def test_answers_about_stored_things_conform_too(keyed_settings):
    """What random ids never reach: a stored image, a finished job, its artifacts and preview, a key, a real model."""
    app = create_app(keyed_settings)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(app) as client:
        image_id = client.post("/v1/images", files={"file": ("a.png", encode(Image.new("RGB", (16, 16), "teal")))},
                               headers=admin).json()["id"]
        job = {"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image_id}}
        job_id = client.post("/v1/jobs", json=job, headers=admin).json()["id"]
        jobs, storage = JobStore(connect(keyed_settings), 600), make_storage(keyed_settings)
        record = jobs.get(job_id)
        jobs.start(job_id, 3, "test:1")
        store_preview(storage, job_id, Image.new("RGB", (8, 8)))
        result = Result(images={"map": Image.new("RGB", (8, 8))}, arrays={"raw": np.zeros((2, 2), np.float32)}, data={"a": 1})
        jobs.finish(record, "succeeded", artifacts=store_result(storage, job_id, result), result={"a": 1})
        key_id = client.post("/v1/keys", json={"scope": "read"}, headers=admin).json()["id"]

        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        cases = [
            ("GET", "/v1/images/{image_id}", {"image_id": image_id}, None),
            ("GET", "/v1/jobs/{job_id}", {"job_id": job_id}, None),
            ("GET", "/v1/jobs", {}, {"state": "succeeded"}),
            ("DELETE", "/v1/jobs/{job_id}", {"job_id": job_id}, None),  # 409: finished
            ("GET", "/v1/jobs/{job_id}/events", {"job_id": job_id}, None),
            ("GET", "/v1/jobs/{job_id}/preview", {"job_id": job_id}, None),
            ("GET", "/v1/models/{name}", {"name": "efficientnet_lite0"}, None),
            ("GET", "/v1/keys", {}, None),
            ("DELETE", "/v1/keys/{key_id}", {"key_id": key_id}, None),
            ("GET", "/readyz", {}, None),
            ("GET", "/metrics", {}, None),
            *[("GET", "/v1/jobs/{job_id}/artifacts/{name}", {"job_id": job_id, "name": name}, None)
              for name in ("map.png", "raw.npy", "result.json")],
        ]
        statuses = []
        for method, path, parameters, query in cases:
            case = schema[path][method].Case(path_parameters=parameters, query=query)
            response = case.call(headers=admin)
            case.validate_response(response, checks=CHECKS)
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 409, 200, 200, 200, 200, 204, 200, 200, 200, 200, 200]
