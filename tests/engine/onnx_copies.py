"""ONNX copies of torchvision architectures with random weights, made once per test process.

Format tests only: the weights are random (never presented as pretrained). They are
drawn so that the output depends on the picture: convolutions nearly keep
the variance of what they read (PyTorch's default shrinks it, and after fifty
layers ShuffleNet's logits no longer change with the picture), and norm
layers and ConvNeXt's layer scales get random values too (at their defaults, a
ConvNeXt block's branch adds a millionth of its value and a wrong computation
inside it would go unseen).
"""

from functools import cache

import torch
import torchvision
from torch import nn

from engine.models import ConvLensModel
from engine.models.formats import onnx_network
from tests.engine.tiny_nets import wrap
from tests.model_files import onnx_bytes

SIZE = 64


def randomised(net: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)

    def uniform(shape, low, high):
        return torch.rand(shape, generator=generator) * (high - low) + low

    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()  # 1.6: between keeping the variance (2, He et al.) and halving it
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (1.6 / fan_in) ** 0.5)
            if isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                module.weight.copy_(uniform(module.weight.shape, 0.5, 1.5))
                module.bias.copy_(uniform(module.bias.shape, -0.2, 0.2))
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(uniform(module.running_mean.shape, -0.2, 0.2))
                module.running_var.copy_(uniform(module.running_var.shape, 0.5, 1.5))
            if hasattr(module, "layer_scale"):
                module.layer_scale.copy_(uniform(module.layer_scale.shape, 0.1, 0.5))
    return net.eval()


@cache
def onnx_copy(name: str) -> tuple[ConvLensModel, ConvLensModel, bytes]:
    """(the torchvision network, its ONNX export read by ``onnx_network``, both wrapped alike at 64x64;
    the ONNX file)."""
    torch.manual_seed(0)
    original = randomised(getattr(torchvision.models, name)(weights=None))
    data = onnx_bytes(original, (SIZE, SIZE))
    return wrap(original, name, SIZE, 1000), wrap(onnx_network(data), f"{name}_onnx", SIZE, 1000), data
