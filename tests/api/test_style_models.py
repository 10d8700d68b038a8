"""POST /v1/stylize and the style-model routes, on a stored two-style network.

The network here has random weights (this tests the routes and the weight format, not training:
tests/engine/test_fast_style.py trains real ones); its two styles get different norm parameters.
"""

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from engine.synthesis.fast_style import StyleModelConfig, build
from tests.pictures import encode
from worker.storage import make_storage
from worker.style_models import StyleModelStore

MODEL_ID = "ab" * 12


@pytest.fixture(scope="module")
def stored(client):
    config = StyleModelConfig(width=4, blocks=1, styles=2, style_names=["one", "two"])
    torch.manual_seed(0)
    net = build(config)
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if name.endswith(("scale", "shift")):
                value.copy_(torch.randn_like(value))
    StyleModelStore(make_storage(client.app.state.settings)).save("public", MODEL_ID, config, net.state_dict(), {"job": None})
    return MODEL_ID


def stylize(client, photo: Image.Image, **fields):
    return client.post("/v1/stylize", json={"style_model": MODEL_ID, "image": {"base64": base64.b64encode(encode(photo)).decode()}, **fields})


def picture(answer) -> np.ndarray:
    assert answer.status_code == 200, answer.text
    return np.asarray(Image.open(io.BytesIO(answer.content)), dtype=np.float32)


def test_styles_and_a_mix_are_three_pictures(client, stored, chelsea):
    photo = chelsea.resize((60, 40))
    one, two, mixed = picture(stylize(client, photo, style=0)), picture(stylize(client, photo, style=1)), picture(stylize(client, photo, style_weights=[1, 1]))
    assert one.shape == (40, 60, 3)
    for a, b in ((one, two), (one, mixed), (two, mixed)):
        assert np.abs(a - b).mean() > 2.0
    np.testing.assert_array_equal(picture(stylize(client, photo, style_weights=[1, 0])), one)


def test_listed_and_read(client, stored):
    assert MODEL_ID in [m["id"] for m in client.get("/v1/style_models").json()["style_models"]]
    record = client.get(f"/v1/style_models/{MODEL_ID}").json()
    assert record["styles"] == 2 and record["style_names"] == ["one", "two"]


def test_a_model_stored_before_the_layout_fields_still_stylises(client, chelsea):
    """Records written before ``space_to_depth`` / ``outer_kernel`` existed hold Johnson's layout and load unchanged."""
    old_id, config = "ef" * 12, StyleModelConfig(width=4, blocks=1, styles=1, style_names=["old"])
    store = StyleModelStore(make_storage(client.app.state.settings))
    store.save("public", old_id, config, build(config).state_dict(), {"job": None})
    key = store.index.key("public", old_id, "json")
    record = json.loads(store.storage.get(key))
    store.storage.put(key, json.dumps({k: v for k, v in record.items() if k not in ("space_to_depth", "outer_kernel")}).encode(), "application/json")
    photo = chelsea.resize((30, 20))
    answer = client.post("/v1/stylize", json={"style_model": old_id, "image": {"base64": base64.b64encode(encode(photo)).decode()}})
    assert picture(answer).shape == (20, 30, 3)


def test_unknown_model_and_bad_styles(client, stored, chelsea):
    photo = chelsea.resize((32, 32))
    for model_id in ("cd" * 12, "not-an-id"):
        answer = client.post("/v1/stylize", json={"style_model": model_id, "image": {"base64": base64.b64encode(encode(photo)).decode()}})
        assert answer.status_code == 404 and answer.json()["code"] == "unknown_style_model"
        assert client.get(f"/v1/style_models/{model_id}").status_code == 404
    for fields in ({"style": 2}, {"style_weights": [1.0]}, {"style": 0, "style_weights": [1, 1]}):
        answer = stylize(client, photo, **fields)
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_params", fields
    assert client.post("/v1/stylize", json={"style_model": MODEL_ID}).status_code == 422
    assert client.post("/v1/stylize", content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_json_nested_too_deep_is_a_400(client, stored, chelsea):
    nested = "[" * 5000 + "]" * 5000  # well-formed JSON, nested past any parser's recursion limit
    as_json = client.post("/v1/stylize", content=nested.encode(), headers={"content-type": "application/json"})
    as_form = client.post("/v1/stylize", files={"image": ("photo", encode(chelsea.resize((32, 32))), "image/png")},
                          data={"style_model": MODEL_ID, "style": nested})
    for answer in (as_json, as_form):
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "malformed_json" and "recursion limit" in answer.json()["detail"]


def test_style_weights_that_are_not_numbers_are_refused(client, stored, chelsea):
    """JSON's parser reads NaN and Infinity: they must not mix a picture of NaN."""
    photo = base64.b64encode(encode(chelsea.resize((32, 32)))).decode()
    for weights in ("[NaN, 1]", "[Infinity, 1]", "[]"):
        body = f'{{"style_model": "{MODEL_ID}", "style_weights": {weights}, "image": {{"base64": "{photo}"}}}}'
        answer = client.post("/v1/stylize", content=body.encode(), headers={"content-type": "application/json"})
        assert answer.status_code == 422 and answer.json()["code"] == "invalid_request", (weights, answer.text[:300])
        assert answer.json()["detail"].startswith("style_weights")
