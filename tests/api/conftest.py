"""The real app (real weights, real photos) behind httpx."""

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import Field

from api.app import create_app
from engine import registry
from engine.cost import Cost
from engine.params import Params
from engine.registry import InputSlot, Method
from engine.result import Result
from api.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def image_store(tmp_path_factory):
    """Uploaded images go to a temporary directory, never to the checkout's var/storage."""
    with pytest.MonkeyPatch.context() as patch:
        path = tmp_path_factory.mktemp("storage")
        patch.setenv("CONVLENS_STORAGE_DIR", str(path))
        yield path


def make_settings(**overrides) -> Settings:
    """Open access (one tenant, no keys) unless a test configures keys."""
    return Settings(**{"inline_threads": 2, "inline_backlog": 8, "device": "cpu", "open_access": True, **overrides})


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(make_settings())) as client:
        yield client


class ProbeParams(Params):
    layer: str | None = Field(None, description="a layer to look up")
    channel: int | None = Field(None, ge=0, description="a channel of that layer")
    target_class: int | str | None = Field(None, description="a class index or label")
    size: int = Field(32, ge=8, le=256, description="side of the returned picture")


class Gate:
    """Holds probe runs until opened, to fill the inline pool on purpose."""

    def __init__(self):
        self.open = threading.Event()
        self.entered = threading.Semaphore(0)


def probe(model, inputs, params: ProbeParams, progress) -> Result:
    """A test method: looks things up on the real model, returns a picture and an array."""
    gate: Gate | None = PROBE_GATE.get("gate")
    if gate is not None:
        gate.entered.release()
        gate.open.wait(timeout=30)
    if params.layer is not None:
        model.layer(params.layer)
        if params.channel is not None:
            model.check_channel(params.layer, params.channel, model.input_size)
    if params.target_class is not None:
        model.class_index(params.target_class)
    images = inputs["images"]
    picture = images[0].resize((params.size, params.size))
    sizes = np.array([image.size for image in images], dtype=np.int32)
    return Result(images={"first": picture}, arrays={"sizes": sizes}, data={"count": len(images)}, main="first")


PROBE_GATE: dict[str, Gate] = {}
PROBE = Method(
    name="probe",
    summary="Test method",
    category="inspect",
    params=ProbeParams,
    run=probe,
    cost=lambda model, params, images: Cost(images, 3 * params.size * params.size, 0),
    inputs=(InputSlot("images", "two or three pictures", many=True, min_count=2, max_count=3),),
    queue="cpu",
)


@pytest.fixture
def probe_method():
    """Registers the probe method for one test (removed afterwards)."""
    registry.METHODS.add(PROBE.name, PROBE)
    yield PROBE
    registry.METHODS.remove(PROBE.name)


@pytest.fixture
def probe_client(probe_method):
    with TestClient(create_app(make_settings())) as client:
        yield client


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    from tests.e2e.servers import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


ADMIN_KEY = "test-admin-key-0123456789"


@pytest.fixture
def keyed_settings(redis_server, tmp_path):
    """Keys required (a bootstrap admin key), a real Redis and a fresh store per test."""
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return make_settings(open_access=False, admin_key=ADMIN_KEY, redis_url=redis_server.url, storage_dir=str(tmp_path / "storage"))
