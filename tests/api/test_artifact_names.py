"""Over HTTP, every artifact of the methods that draw their raw arrays is listed once and
fetchable alone: each array as .npy, each picture as PNG."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.pictures import encode

CASES = {
    "guided_backprop": ({}, "input_gradient", (3, 224, 224)),
    "deconvnet": ({}, "input_gradient", (3, 224, 224)),
    "activations": ({"size": 64, "layer": "conv_stem", "top_k": 4}, "maps", (32, 32, 32)),
    "segmentation": ({"steps": 1}, "foreground", (224, 224)),
}


@pytest.mark.parametrize("method", CASES)
def test_each_artifact_has_its_own_name_and_arrays_come_as_npy(client, chelsea, method):
    params, array_name, shape = CASES[method]
    files = {"image": ("c.png", encode(chelsea.resize((80, 64))), "image/png")}
    data = {"model": "efficientnet_lite0", "params": json.dumps(params)}
    body = client.post(f"/v1/{method}", files=files, data=data)
    assert body.status_code == 200, body.text
    artifacts = body.json()["artifacts"]
    names = [artifact["name"] for artifact in artifacts]
    assert len(names) == len(set(names)), names

    raw = client.post(f"/v1/{method}?artifact={array_name}", files=files, data=data, headers={"accept": "application/x-npy"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "application/x-npy"
    assert np.load(io.BytesIO(raw.content)).shape == shape

    picture = next(artifact["name"] for artifact in artifacts if artifact["kind"] == "image")
    png = client.post(f"/v1/{method}?artifact={picture}", files=files, data=data, headers={"accept": "image/png"})
    assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).format == "PNG"
