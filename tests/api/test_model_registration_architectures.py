"""torchvision's resnet18, densenet121 and alexnet architectures as ONNX files, registered over HTTP.

Random weights: these are format tests (does every layer come through, does
every method run), never presented as pretrained models. 64x64 inputs except
AlexNet, whose adaptive pooling exports to ONNX only at 224x224.
"""

import base64
import json
import io

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from tests.model_files import onnx_bytes, register, registry_client  # noqa: F401
from tests.pictures import encode

LABELS = [f"class {i}" for i in range(10)]
ARCHITECTURES = {
    "resnet18": (64, 64),
    "densenet121": (64, 64),
    "alexnet": (224, 224),
}


def conv_output_shapes(net: nn.Module, size) -> list[list[int]]:
    """Each Conv2d's output shape, in the order they run, from the original torchvision module."""
    shapes, handles = [], []
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(lambda _m, _i, out: shapes.append(list(out.shape[1:]))))
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, *size))
    finally:
        for handle in handles:
            handle.remove()
    return shapes


@pytest.fixture(scope="module", params=[
    "resnet18", "densenet121", pytest.param("alexnet", marks=pytest.mark.slow),
])
def architecture(request, registry_client):
    name, size = request.param, ARCHITECTURES[request.param]
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(num_classes=len(LABELS)).eval()
    meta = {"name": f"format-test-{name}", "description": f"torchvision {name} architecture, RANDOM weights (format test)",
            "preprocessing": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "input_size": list(size), "labels": LABELS}
    response = register(registry_client, meta["name"], onnx_bytes(net, size), meta)
    assert response.status_code == 201, response.text
    return net, size, response.json()


def test_catalogue_lists_every_convolution_with_its_shape(architecture):
    net, size, described = architecture
    convs = [layer["shape"] for layer in described["layers"] if layer["type"] == "Conv2d"]
    assert convs == conv_output_shapes(net, size)
    assert described["num_classes"] == 10 and described["input_size"] == list(size)


def test_first_layer_filters_come_as_rgb_tiles(registry_client, architecture):
    net, _size, described = architecture
    response = registry_client.post("/v1/filters?embed=all", json={"model": described["name"], "params": {"max_filters": 16}})
    assert response.status_code == 200, response.text
    body = response.json()
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    assert body["data"]["drawn_as"] == "rgb" and body["data"]["layer"] == described["first_conv"]
    assert body["data"]["weight_shape"] == list(first.weight.shape)
    picture = next(a for a in body["artifacts"] if a["name"] == "filters")
    assert Image.open(io.BytesIO(base64.b64decode(picture["data_base64"]))).mode == "RGB"
    weights = next(a for a in body["artifacts"] if a["name"] == "weights")
    drawn = np.load(io.BytesIO(base64.b64decode(weights["data_base64"])), allow_pickle=False)
    # the exporter folds a following batch norm (fresh statistics: a scale of 1/sqrt(1 + 1e-5)) into the weights
    np.testing.assert_allclose(drawn, first.weight.detach()[:16].numpy(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("method", ["saliency", "guided_backprop", "gradcam", "occlusion"])
def test_attribution_methods_run(registry_client, architecture, small_chelsea, method):
    _net, size, described = architecture
    params = {"window": size[0] // 4, "stride": size[0] // 4} if method == "occlusion" else {}
    files = {"image": ("p.png", encode(small_chelsea, "PNG"), "image/png")}
    response = registry_client.post(f"/v1/{method}?embed=all", files=files, data={"model": described["name"], "params": json.dumps(params)})
    assert response.status_code == 200, response.text
    maps = [a for a in response.json()["artifacts"] if a["name"] == "map"]
    array = np.load(io.BytesIO(base64.b64decode(maps[0]["data_base64"])), allow_pickle=False)
    assert array.shape == size and np.isfinite(array).all()
