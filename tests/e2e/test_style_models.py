"""A style model trained by a real worker's job, stored, listed, applied by POST /v1/stylize, deleted."""

import io

import pytest
from PIL import Image

from tests.e2e.conftest import start_stack, stack_env
from tests.e2e.test_every_method_as_job import follow
from tests.pictures import encode


@pytest.fixture(scope="module")
def stack(redis_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("style-models")
    stack = start_stack(stack_env(redis_server.url, "filesystem", tmp, None), tmp / "worker.log")
    with stack.client:
        yield stack
    stack.worker.stop()


def test_trained_style_model_is_stored_and_stylises_inline(stack, coffee, chelsea):
    style = stack.upload(coffee.resize((64, 48)))
    params = {"steps": 3, "batch_size": 1, "size": 32, "base_channels": 4, "residual_blocks": 1, "content_layer": "block2_relu2",
              "style_layers": ["block1_relu1", "block2_relu1"], "style_names": ["coffee"]}  # fmt: skip
    body = {"method": "train_style_model", "model": "vgg19", "inputs": {"content": {"collection": "samples"}, "style": [style]}, "params": params}
    submitted = stack.client.post("/v1/jobs", json=body)
    assert submitted.status_code == 202, submitted.text
    job, running = follow(stack, submitted.json()["id"])
    assert job["state"] == "succeeded", job["error"]
    model_id = job["result"]["style_model"]["id"]
    assert job["result"]["style_model"]["url"] == f"/v1/style_models/{model_id}"

    listed = stack.client.get("/v1/style_models").json()["style_models"]
    assert [m["id"] for m in listed] == [model_id] and listed[0]["style_names"] == ["coffee"] and listed[0]["job"] == job["id"]

    photo = encode(chelsea.resize((80, 53)), "PNG")
    answer = stack.client.post("/v1/stylize", data={"style_model": model_id}, files={"image": ("cat.png", photo, "image/png")})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png" and "engine;dur=" in answer.headers["server-timing"]
    assert Image.open(io.BytesIO(answer.content)).size == (80, 53)

    assert stack.client.delete(f"/v1/style_models/{model_id}").status_code == 204
    gone = stack.client.post("/v1/stylize", data={"style_model": model_id}, files={"image": ("cat.png", photo, "image/png")})
    assert gone.status_code == 404 and gone.json()["code"] == "unknown_style_model"
