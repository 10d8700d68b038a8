"""Default layers for content, style, dreaming and diversity: named by the built-ins, derived for any other CNN."""

import pytest
import torch
import torchvision

from engine.models import find_spec, load_model
from engine.models.layer_roles import ROLES, role_layers
from engine.models.registered import ModelMetadata, spec_from_metadata
from engine.models.wrapper import ConvLensModel
from tests.model_files import metadata


def wrapped(net, size=(64, 64)) -> ConvLensModel:
    meta = ModelMetadata.parse(metadata("roles-test", size, [str(i) for i in range(10)]))
    return ConvLensModel(spec_from_metadata(meta, "onnx", lambda: net, None, "test"), net)


def test_a_vgg_shaped_network_gets_gatys_layers():
    """torchvision's vgg11 (random weights): features.1, .4, .7, .12, .17 are the first ReLU after each downsampling
    (Gatys et al.'s relu1_1 .. relu5_1); features.14 is relu4_2."""
    torch.manual_seed(0)
    model = wrapped(torchvision.models.vgg11(num_classes=10).eval())
    assert role_layers(model, "style") == ("features.1", "features.4", "features.7", "features.12", "features.17")
    assert role_layers(model, "content") == ("features.14",)
    assert role_layers(model, "dream") == ("features.9",)  # the last layer of the middle (16x16) stage


def test_built_ins_keep_the_layers_they_were_tuned_on():
    assert role_layers(load_model("vgg19", "cpu"), "content") == ("block4_relu2",)
    assert role_layers(load_model("efficientnet_lite0", "cpu"), "diversity") == ("blocks.6",)
    assert set(find_spec("vgg19").layer_roles) == set(ROLES) == set(find_spec("efficientnet_lite0").layer_roles)


@pytest.mark.parametrize("arch", ["convnext_tiny", "shufflenet_v2_x0_5", "mobilenet_v3_small"])
def test_derived_layers_are_feature_maps_in_a_convolutions_layout(arch):
    """ConvNeXt runs its blocks channel-last between permutes: those tensors must never be chosen as (C, H, W) maps."""
    torch.manual_seed(0)
    model = wrapped(getattr(torchvision.models, arch)(num_classes=10).eval())
    catalogue = {info.name: info for info in model.catalogue()}
    conv_outputs = {info.shape for info in catalogue.values() if info.type == "Conv2d"}
    for role in ROLES:
        for layer in role_layers(model, role):
            assert catalogue[layer].shape in conv_outputs, (role, layer, catalogue[layer].shape)
