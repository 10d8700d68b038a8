"""The model and method catalogue over HTTP."""

from engine.registry import all_methods


def test_models_are_listed(client):
    models = {model["name"]: model for model in client.get("/v1/models").json()["models"]}
    assert set(models) >= {"efficientnet_lite0", "vgg19"}
    assert models["efficientnet_lite0"]["has_classifier"] and models["efficientnet_lite0"]["num_classes"] == 1000
    assert not models["vgg19"]["has_classifier"]


def test_layers_follow_the_requested_input_size(client):
    native = client.get("/v1/models/vgg19").json()
    small = client.get("/v1/models/vgg19", params={"height": 64, "width": 96}).json()
    assert small["layers_input_size"] == [64, 96]
    native_shapes = {layer["name"]: layer["shape"] for layer in native["layers"]}
    small_shapes = {layer["name"]: layer["shape"] for layer in small["layers"]}
    assert native_shapes["block1_conv1"] == [64, 224, 224]
    assert small_shapes["block1_conv1"] == [64, 64, 96]
    assert small_shapes["block5_conv4"] == [512, 4, 6]
    assert native["labels"] == []


def test_labels_of_a_classifier(client):
    model = client.get("/v1/models/efficientnet_lite0").json()
    assert len(model["labels"]) == 1000 and model["labels"][967] == "espresso"
    assert any(layer["name"] == model["default_layer"] for layer in model["layers"])


def test_unknown_model_is_a_404_problem(client):
    response = client.get("/v1/models/resnet9000")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "unknown_model"


def test_bad_catalogue_size_is_a_422_problem(client):
    response = client.get("/v1/models/vgg19", params={"height": 3})
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_methods_are_listed_with_their_params_schema(client):
    listed = {method["name"]: method for method in client.get("/v1/methods").json()["methods"]}
    assert set(listed) == {method.name for method in all_methods()}
    classify = listed["classify"]
    assert classify["inline"] and classify["inputs"][0]["name"] == "image"
    assert classify["params_schema"]["properties"]["top_k"]["maximum"] == 1000
