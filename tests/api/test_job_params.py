"""A job's params that can only fail once it runs are refused at submission (422 invalid_params naming the field),
before any image lookup or queueing: the same check (engine.run.prepare) serves inline calls and the worker."""

import pytest

from tests.api.test_inline_errors import assert_problem

UNKNOWN = "0" * 32  # an image id nobody uploaded: a submission whose params pass gets 404 unknown_image
STYLE = ("style_transfer", {"content": UNKNOWN, "style": [UNKNOWN]})
TEXTURE = ("texture_synthesis", {"image": UNKNOWN})

BAD = {
    "no style layer weights": (STYLE, {"style_layer_weights": []}, "style_layer_weights"),
    "fewer layer weights than default layers": (STYLE, {"style_layer_weights": [1, 2]}, "style_layer_weights"),
    "more layer weights than named layers": (STYLE, {"style_layers": ["block1_relu1"], "style_layer_weights": [1, 2]}, "style_layer_weights"),
    "all-zero layer weights": (STYLE, {"style_layer_weights": [0, 0, 0, 0, 0]}, "style_layer_weights"),
    "negative layer weight": (STYLE, {"style_layer_weights": [1, 1, 1, 1, -1]}, "style_layer_weights"),
    "no style weights": (STYLE, {"style_weights": []}, "style_weights"),
    "all-zero style weights": (STYLE, {"style_weights": [0]}, "style_weights"),
    "style weights for absent styles": (STYLE, {"style_weights": [1, 1]}, "style_weights"),
    "unknown style layer": (STYLE, {"style_layers": ["block1_relu1", "nope"]}, "nope"),
    "style layer twice": (STYLE, {"style_layers": ["block1_relu1", "block1_relu1"]}, "block1_relu1"),
    "no texture layer weights": (TEXTURE, {"layer_weights": []}, "layer_weights"),
    "texture weight count": (TEXTURE, {"layers": ["block1_relu1"], "layer_weights": [1, 1]}, "layer_weights"),
    "all-zero texture weights": (TEXTURE, {"layers": ["block1_relu1", "block2_relu1"], "layer_weights": [0, 0]}, "layer_weights"),
}


@pytest.mark.parametrize("method_inputs, params, named", BAD.values(), ids=BAD.keys())
def test_bad_synthesis_weights_are_refused_at_submission(client, method_inputs, params, named):
    (method, inputs) = method_inputs
    answer = client.post("/v1/jobs", json={"method": method, "model": "vgg19", "inputs": inputs, "params": {"steps": 1, **params}})
    code = "unknown_layer" if named == "nope" else "invalid_params"
    assert_problem(answer, 404 if code == "unknown_layer" else 422, code)
    assert named in answer.json()["detail"]


GOOD = {
    "matching layer weights": (STYLE, {"style_layers": ["block1_relu1", "block2_relu1"], "style_layer_weights": [1, 0]}),
    "default layers, five weights": (STYLE, {"style_layer_weights": [1, 1, 1, 1, 1]}),
    "one style weight": (STYLE, {"style_weights": [2]}),
    "texture weights": (TEXTURE, {"layers": ["block1_relu1"], "layer_weights": [3]}),
}


@pytest.mark.parametrize("method_inputs, params", GOOD.values(), ids=GOOD.keys())
def test_good_synthesis_weights_pass_to_the_image_lookup(client, method_inputs, params):
    (method, inputs) = method_inputs
    answer = client.post("/v1/jobs", json={"method": method, "model": "vgg19", "inputs": inputs, "params": {"steps": 1, **params}})
    assert_problem(answer, 404, "unknown_image")
