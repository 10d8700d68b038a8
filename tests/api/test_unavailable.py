"""A broker or storage that is down answers 503 with Retry-After, never a 500; plugins load with the app."""

import sys

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from engine import registry
from tests.api.conftest import make_settings
from tests.e2e.servers import free_port
from tests.pictures import encode

PHOTO = encode(Image.new("RGB", (16, 16), "teal"))


def assert_unavailable(response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert response.headers["Retry-After"] == "7"


def test_broker_down_is_503_broker_unavailable(tmp_path):
    settings = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0", storage_dir=str(tmp_path), retry_after_seconds=7)
    with TestClient(create_app(settings)) as client:
        image_id = client.post("/v1/images", files={"file": ("a.png", PHOTO, "image/png")}).json()["id"]
        job = {"method": "classify", "model": "efficientnet_lite0", "inputs": {"image": image_id}}
        assert_unavailable(client.post("/v1/jobs", json=job), "broker_unavailable")
        assert_unavailable(client.get("/v1/jobs/0123456789abcdef01234567"), "broker_unavailable")


def test_storage_down_is_503_storage_unavailable():
    settings = make_settings(storage="s3", s3_endpoint_url=f"http://127.0.0.1:{free_port()}", retry_after_seconds=7,
                             s3_access_key_id="testing", s3_secret_access_key="testing")
    with TestClient(create_app(settings)) as client:
        assert_unavailable(client.post("/v1/images", files={"file": ("a.png", PHOTO, "image/png")}), "storage_unavailable")
        assert_unavailable(client.get(f"/v1/images/{'0' * 32}"), "storage_unavailable")


@pytest.fixture
def unloaded_plugin(monkeypatch):
    """The registry and module cache as if the test plugin had never been imported, restored afterwards."""
    plugin = "tests.e2e.plugins"
    without = {method.name: method for method in registry.all_methods() if method.run.__module__ != plugin}
    monkeypatch.setattr(registry.METHODS, "_items", without)
    monkeypatch.delitem(sys.modules, plugin, raising=False)
    registry.all_methods()
    yield plugin
    sys.modules.pop(plugin, None)  # it registered into the copy: a later import must register for real


def test_plugin_methods_are_listed_from_the_start(unloaded_plugin):
    with TestClient(create_app(make_settings(plugins=unloaded_plugin))) as client:
        names = {method["name"] for method in client.get("/v1/methods").json()["methods"]}
        assert {"probe_steps", "crash_worker", "classify"} <= names
        assert client.post("/v1/probe_steps", json={}).json()["code"] == "method_not_inline"
