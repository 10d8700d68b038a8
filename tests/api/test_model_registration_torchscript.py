"""TorchScript files are refused unread (415 ``format_not_supported``, pointing to torch.export and ONNX):
a scripted ``forward`` calling ``torch.from_file`` would read and overwrite server files when run."""

import pytest

from tests.hostile_files import Canary, torchscript_reading_file
from tests.model_files import metadata, onnx_bytes, register, registry_client, tiny_net, torchscript_bytes  # noqa: F401
from tests.pictures import encode

SIZE = (64, 64)
LABELS = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module")
def kept(registry_client):
    response = register(registry_client, "kept-beside-script", onnx_bytes(tiny_net(), SIZE), metadata("kept-beside-script", SIZE, LABELS))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.parametrize("case", ["plain", "reads_a_file"])
def test_a_torchscript_file_is_refused_unread(registry_client, kept, small_chelsea, tmp_path, case):
    target = tmp_path / "secret.bin"
    data = torchscript_bytes(tiny_net()) if case == "plain" else torchscript_reading_file(target)
    canary = Canary(target)
    name = f"script-{case.replace('_', '-')}"
    response = register(registry_client, name, data, metadata(name, SIZE, LABELS))
    assert response.status_code == 415, response.text
    body = response.json()
    assert body["code"] == "format_not_supported" and "torch.export" in body["detail"] and "ONNX" in body["detail"]
    assert canary.untouched()
    assert registry_client.get(f"/v1/models/{name}").status_code == 404
    files = {"image": ("p.png", encode(small_chelsea, "PNG"), "image/png")}
    assert registry_client.post("/v1/classify", files=files, data={"model": kept["name"]}).status_code == 200


def test_declaring_the_torchscript_format_is_refused(registry_client):
    response = register(registry_client, "declared-script", torchscript_bytes(tiny_net()), metadata("declared-script", SIZE, LABELS, format="torchscript"))
    assert response.status_code == 422 and response.json()["code"] == "invalid_metadata"
