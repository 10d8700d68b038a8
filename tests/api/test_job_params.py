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


ONE = {"image": UNKNOWN}
MANY = {"images": [UNKNOWN, UNKNOWN]}
FAST_STYLE = {"content": {"collection": "samples"}, "style": [UNKNOWN]}
# (method, model, inputs, params, status, code, the param the detail names)
BAD_TARGETS = {
    "inversion layer": ("feature_inversion", "vgg19", ONE, {"layer": "nope"}, 404, "unknown_layer", "params.layer"),
    "deepdream layer": ("deepdream", "vgg19", ONE, {"layer": "nope"}, 404, "unknown_layer", "params.layer"),
    "class vis channel": ("class_visualization", "vgg19", {}, {"objectives": [{"kind": "channel", "layer": "block1_conv1", "channel": 64}]},
                          404, "unknown_channel", "params.objectives[0].channel"),
    "class vis layer": ("class_visualization", "vgg19", {}, {"objectives": [{"kind": "layer", "layer": "nope"}]},
                        404, "unknown_layer", "params.objectives[0].layer"),
    "class vis neuron": ("class_visualization", "vgg19", {}, {"objectives": [{"kind": "neuron", "layer": "block1_conv1", "channel": 0,
                         "neuron": [224, 0]}]}, 422, "invalid_params", "params.objectives[0].neuron"),
    "class vis class": ("class_visualization", "efficientnet_lite0", {}, {"objectives": [{"kind": "layer", "layer": "blocks.4"},
                        {"kind": "class", "target_class": 1000}]}, 404, "unknown_class", "params.objectives[1].target_class"),
    "class vis diversity layer": ("class_visualization", "vgg19", {}, {"facets": 2, "diversity_layer": "nope"}, 404, "unknown_layer",
                                  "params.diversity_layer"),
    "patches channel": ("max_activating_patches", "vgg19", MANY, {"layer": "block1_conv1", "channel": 64}, 404, "unknown_channel",
                        "params.channel"),
    "patches vector layer": ("max_activating_patches", "efficientnet_lite0", MANY, {"layer": "classifier"}, 422, "invalid_params",
                             "params.layer"),
    "overview layer": ("channel_overview", "vgg19", MANY, {"layer": "nope"}, 404, "unknown_layer", "params.layer"),
    "activations channels": ("activations", "vgg19", ONE, {"layer": "block1_conv1", "channels": [0, 64]}, 404, "unknown_channel",
                             "params.channels"),
    "embedding layer": ("embedding", "vgg19", {"images": [UNKNOWN] * 3}, {"layer": "nope"}, 404, "unknown_layer", "params.layer"),
    "fooling class": ("fooling_image", "efficientnet_lite0", ONE, {"target_class": 1000}, 404, "unknown_class", "params.target_class"),
    "fooling label": ("fooling_image", "efficientnet_lite0", ONE, {"target_class": "no such thing"}, 404, "unknown_class",
                      "params.target_class"),
    "evaluation class": ("evaluate_attribution", "efficientnet_lite0", MANY, {"target_class": "no such thing"}, 404, "unknown_class",
                         "params.target_class"),
    "gradcam class": ("gradcam", "efficientnet_lite0", ONE, {"target_class": 1000}, 404, "unknown_class", "params.target_class"),
    "gradcam vector layer": ("gradcam", "efficientnet_lite0", ONE, {"layer": "classifier"}, 422, "invalid_params", "params.layer"),
    "texture vector layer": ("texture_synthesis", "efficientnet_lite0", ONE, {"layers": ["blocks.4", "classifier"]}, 422,
                             "invalid_params", "params.layers"),
    "style vector style layer": ("style_transfer", "efficientnet_lite0", {"content": UNKNOWN, "style": [UNKNOWN]},
                                 {"style_layers": ["classifier"]}, 422, "invalid_params", "params.style_layers"),
    "style vector content layer": ("style_transfer", "efficientnet_lite0", {"content": UNKNOWN, "style": [UNKNOWN]},
                                   {"content_layer": "classifier"}, 422, "invalid_params", "params.content_layer"),
    "filters layer": ("filters", "vgg19", {}, {"layer": "nope"}, 404, "unknown_layer", "params.layer"),
    "filters non-conv layer": ("filters", "vgg19", {}, {"layer": "block1_relu1"}, 422, "invalid_params", "params.layer"),
    "filters channel": ("filters", "vgg19", {}, {"layer": "block1_conv1", "channels": [0, 64]}, 404, "unknown_channel", "params.channels"),
    "fast style content layer": ("train_style_model", "vgg19", FAST_STYLE, {"content_layer": "nope"}, 404, "unknown_layer",
                                 "params.content_layer"),
    "fast style style layer": ("train_style_model", "vgg19", FAST_STYLE, {"style_layers": ["block1_relu1", "nope"]}, 404, "unknown_layer",
                               "params.style_layers"),
    "fast style vector style layer": ("train_style_model", "efficientnet_lite0", FAST_STYLE, {"style_layers": ["classifier"]}, 422,
                                      "invalid_params", "params.style_layers"),
    "guided backprop channel": ("guided_backprop", "vgg19", ONE, {"layer": "block1_conv1", "channel": 64}, 404, "unknown_channel",
                                "params.channel"),
    "deconvnet neuron": ("deconvnet", "vgg19", ONE, {"layer": "block1_conv1", "channel": 0, "neuron": [0, 224]}, 422, "invalid_params",
                         "params.neuron"),
}


@pytest.mark.parametrize("method, model, inputs, params, status, code, named", BAD_TARGETS.values(), ids=BAD_TARGETS.keys())
def test_unknown_targets_are_refused_at_submission(client, method, model, inputs, params, status, code, named):
    answer = client.post("/v1/jobs", json={"method": method, "model": model, "inputs": inputs, "params": params})
    assert_problem(answer, status, code)
    assert named in answer.json()["detail"]


GOOD_TARGETS = {
    "inversion layer": ("feature_inversion", "vgg19", ONE, {"layer": "block3_relu1"}),
    "class vis terms": ("class_visualization", "efficientnet_lite0", {"image": UNKNOWN}, {"objectives": [
        {"kind": "neuron", "layer": "blocks.4", "channel": 0, "neuron": [13, 13]}, {"kind": "class", "target_class": "Flamingo"}]}),
    "class vis neuron at another size": ("class_visualization", "vgg19", {"image": UNKNOWN}, {"size": 256, "objectives": [
        {"kind": "neuron", "layer": "block1_conv1", "channel": 63, "neuron": [250, 250]}]}),
    "patches channel": ("max_activating_patches", "vgg19", MANY, {"layer": "block1_conv1", "channel": 63}),
    "fooling class": ("fooling_image", "efficientnet_lite0", ONE, {"target_class": 999}),
    "fast style layers": ("train_style_model", "vgg19", FAST_STYLE, {"content_layer": "block3_relu1", "style_layers": ["block1_relu1"]}),
    "guided backprop neuron": ("guided_backprop", "vgg19", ONE, {"layer": "block1_conv1", "channel": 63, "neuron": [223, 223]}),
}


@pytest.mark.parametrize("method, model, inputs, params", GOOD_TARGETS.values(), ids=GOOD_TARGETS.keys())
def test_known_targets_pass_to_the_image_lookup(client, method, model, inputs, params):
    answer = client.post("/v1/jobs", json={"method": method, "model": model, "inputs": inputs, "params": params})
    assert_problem(answer, 404, "unknown_image")
