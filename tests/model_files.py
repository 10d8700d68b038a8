"""Model files made inside the tests (ONNX, torch.export, TorchScript) and a registration stack.

Format tests use torchvision architectures with random weights at 64x64:
they test reading and running a file format, never what a network learned.
"""

import io
import json
import warnings

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from tests.e2e.servers import RedisServer

IMAGENET_PRE = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def onnx_bytes(net: nn.Module, size: tuple[int, int]) -> bytes:
    """The legacy (TorchScript-based) exporter, opset 17, batch axis dynamic."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net.eval(), (torch.zeros(1, 3, *size),), buffer, dynamo=False, opset_version=17,
            input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    return buffer.getvalue()


def pt2_bytes(net: nn.Module, size: tuple[int, int]) -> bytes:
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(net.eval(), (torch.zeros(2, 3, *size),), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def torchscript_bytes(net: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(net.eval()), buffer)
    return buffer.getvalue()


def metadata(name: str, size: tuple[int, int], labels, **extra) -> dict:
    return {"name": name, "preprocessing": IMAGENET_PRE, "input_size": list(size), "labels": labels, **extra}


def register(client: TestClient, name: str, data: bytes, meta: dict):
    return client.post("/v1/models", files={"file": (name, data, "application/octet-stream")}, data={"metadata": json.dumps(meta)})


class TinyNet(nn.Module):
    """A small CNN with random weights (format tests only): conv-bn-relu x2, global pool, linear."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
        )
        self.head = nn.Linear(16, classes)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


class BrightIsNaN(nn.Module):
    """Random-weight logits times sqrt(-mean input): NaN for a bright picture (positive after ImageNet normalisation),
    finite for a dark one such as the all-zero picture registration runs."""

    def __init__(self, classes: int = 4):
        super().__init__()
        self.net = tiny_net(classes)

    def forward(self, x):
        return self.net(x) * (-x.mean((1, 2, 3))).sqrt()[:, None]


def tiny_net(classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return TinyNet(classes).eval()


@pytest.fixture(scope="module")
def registry_client(tmp_path_factory):
    """The real app over a real Redis, filesystem storage in a temporary directory, registration on."""
    from api.app import create_app
    from tests.api.conftest import make_settings

    tmp = tmp_path_factory.mktemp("registry")
    server = RedisServer(tmp / "redis").start()
    settings = make_settings(
        redis_url=server.url, storage_dir=str(tmp / "storage"),
        max_model_bytes=512 * 1024 * 1024,  # AlexNet at 224x224 is a 230 MB file
    )
    try:
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        server.stop()
