"""Job submissions naming a webhook are refused before anything is queued when the target is not allowed."""

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.api.conftest import make_settings

JOB = {"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": "0" * 32}}


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/x",
                                 "http://169.254.169.254/latest/meta-data", "http://[::1]/hook"])
def test_private_targets_are_refused(url):
    with TestClient(create_app(make_settings(webhook_secret="s3cret"))) as client:
        answer = client.post("/v1/jobs", json={**JOB, "webhook": {"url": url}})
    assert (answer.status_code, answer.json()["code"]) == (422, "webhook_refused"), answer.text
    assert "non-public" in answer.json()["detail"]


def test_webhooks_need_a_secret(client):
    answer = client.post("/v1/jobs", json={**JOB, "webhook": {"url": "https://example.com/hook"}})
    assert (answer.status_code, answer.json()["code"]) == (422, "webhooks_not_configured")


def test_bad_webhook_requests_name_the_field(client):
    answer = client.post("/v1/jobs", json={**JOB, "webhook": {"url": "ftp://example.com", "events": ["finished"]}})
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_request")
    assert {tuple(error["loc"]) for error in answer.json()["errors"]} >= {("webhook", "url"), ("webhook", "events", "0")}
