"""Small hand-built CNNs with fixed-seed weights, wrapped as real ConvLensModels."""

import torch
import torch.nn.functional as F
from torch import nn

from engine.models import ConvLensModel, ModelSpec, Preprocessing


class ModuleReLUNet(nn.Module):
    """conv-ReLU x3 with a max pool, global average pool and a linear head; every ReLU its own module."""

    def __init__(self, act=nn.ReLU, classes: int = 10):
        super().__init__()
        self.conv1, self.act1 = nn.Conv2d(3, 8, 3, padding=1), act()
        self.conv2, self.act2 = nn.Conv2d(8, 8, 3, stride=2, padding=1), act()
        self.pool = nn.MaxPool2d(2)
        self.conv3, self.act3 = nn.Conv2d(8, 16, 3, padding=1), act()
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = self.pool(self.act2(self.conv2(self.act1(self.conv1(x)))))
        return self.fc(self.gap(self.act3(self.conv3(x))).flatten(1))


class MixedActivationNet(nn.Module):
    """Functional, in-place, ReLU6, hardtanh, clamp and a reused ReLU module, plus a residual sum."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.conv4 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv5 = nn.Conv2d(16, 16, 1)
        self.relu6 = nn.ReLU6(inplace=True)
        self.shared = nn.ReLU()
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = x + torch.relu_(self.conv2(x))
        x = self.relu6(self.conv3(x))
        x = self.shared(F.hardtanh(self.conv4(x), 0.0, 6.0) - 1.0)
        x = self.shared(self.conv5(x)).clamp(min=0)
        return self.fc(x.mean((2, 3)))


class ExplicitMixedNet(nn.Module):
    """MixedActivationNet with every activation a distinct, out-of-place module (the reference)."""

    def __init__(self, mixed: MixedActivationNet):
        super().__init__()
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc"):
            setattr(self, name, getattr(mixed, name))
        self.a1, self.a2, self.a3 = nn.ReLU(), nn.ReLU(), nn.ReLU6()
        self.a4, self.a5, self.a6, self.a7 = nn.ReLU6(), nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        x = self.a1(self.conv1(x))
        x = x + self.a2(self.conv2(x))
        x = self.a3(self.conv3(x))
        x = self.a5(self.a4(self.conv4(x)) - 1.0)
        x = self.a7(self.a6(self.conv5(x)))
        return self.fc(x.mean((2, 3)))


def seeded(net: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    return net.eval()


def wrap(net: nn.Module, name: str = "tiny", size: int = 32, classes: int = 10) -> ConvLensModel:
    spec = ModelSpec(
        name=name,
        description="hand-built test network",
        build=lambda: net,
        preprocessing=Preprocessing(mean=(0.5, 0.4, 0.3), std=(0.25, 0.25, 0.25)),
        input_size=(size, size),
        first_conv="conv1",
        labels=tuple(f"class {i}" for i in range(classes)),
        default_layer="conv3",
    )
    return ConvLensModel(spec, net)


def rule_hooks(net: nn.Module, rule: str) -> list:
    """Reference rule by hand: full backward hooks on every activation module (all distinct, out of place)."""
    handles = []
    for module in net.modules():
        if isinstance(module, (nn.ReLU, nn.ReLU6)):
            if rule == "guided":
                hook = lambda m, gin, gout: (gin[0].clamp(min=0),)  # noqa: E731
            else:
                hook = lambda m, gin, gout: (gout[0].clamp(min=0),)  # noqa: E731
            handles.append(module.register_full_backward_hook(hook))
    return handles
