"""Guided backprop and deconvnet apply their rule at every ReLU: modules, functional, in-place, ReLU6, reused."""

import copy

import pytest
import torch
import torch.nn.functional as F
from captum.attr import Deconvolution, GuidedBackprop
from torch import nn

from engine.attribution.gradients import class_gradient
from engine.attribution.guided_backprop import relu_rule_gradient
from engine.attribution.targets import UnitTarget
from engine.errors import UnsupportedModel
from engine.hooks import hook_count
from engine.imaging import fit_image, to_tensor
from engine.models import ConvLensModel
from engine.relu_rules import build_rule_copy
from tests.engine.onnx_copies import onnx_copy
from tests.engine.tiny_nets import ExplicitMixedNet, MixedActivationNet, rule_hooks, seeded, wrap


def reference_gradient(net: nn.Module, x: torch.Tensor, rule: str, index: int) -> torch.Tensor:
    """The rule applied by hand through backward hooks on distinct, out-of-place activation modules."""
    handles = rule_hooks(net, rule)
    try:
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(xg)[0, index], xg)
    finally:
        for h in handles:
            h.remove()
    return grad


@pytest.fixture(scope="module")
def mixed():
    return wrap(seeded(MixedActivationNet(), seed=3))


@pytest.mark.parametrize("rule", ["guided", "deconv"])
def test_rule_reaches_functional_inplace_relu6_and_reused_relus(mixed, chelsea, rule):
    x = to_tensor(fit_image(chelsea, (32, 32)))
    reference_net = wrap(ExplicitMixedNet(mixed.net), "explicit")
    expected = reference_gradient(reference_net, x, rule, 7)
    ours, _ = relu_rule_gradient(mixed, x, rule, index=7)
    plain, _, _ = class_gradient(mixed, x, 7)
    assert build_rule_copy(mixed, rule).gates == 7  # 2 uses of the shared module + 5 other gates
    assert not torch.allclose(expected, plain, atol=1e-3)  # skipping any rule would be visible
    assert torch.allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("rule", ["guided", "deconv"])
def test_rule_matches_a_hand_rewritten_efficientnet(efficientnet, chelsea, rule):
    """EfficientNet-Lite0 uses ReLU6(inplace=True) inside timm's BatchNormAct2d."""
    x = to_tensor(fit_image(chelsea, (128, 128)))
    reference = ConvLensModel(efficientnet.spec, copy.deepcopy(efficientnet.net))
    swapped = 0
    for module in reference.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, nn.ReLU6(inplace=False))
                swapped += 1
    assert swapped == 33
    expected = reference_gradient(reference, x, rule, 285)
    ours, target = relu_rule_gradient(efficientnet, x, rule, index=285)
    plain, _, _ = class_gradient(efficientnet, x, 285)
    assert target["label"] == "Egyptian cat"
    assert not torch.allclose(expected, plain, atol=1e-4)
    # ours runs with batch norms folded into the convs: equal up to float rounding
    assert torch.allclose(ours, expected, atol=1e-5 * float(expected.abs().max()), rtol=1e-4)
    assert hook_count(efficientnet) == 0



@pytest.mark.parametrize("name", ["shufflenet_v2_x0_5", "convnext_tiny"])
@pytest.mark.parametrize("rule, peer", [("guided", GuidedBackprop), ("deconv", Deconvolution)])
def test_rules_on_onnx_copies_match_captum_on_the_torchvision_original(chelsea, name, rule, peer):
    """Random weights (a format test). Captum hooks the original's nn.ReLU modules (made out of place in a
    copy, which computes the same function); ConvNeXt has no ReLU, so both rules are its plain gradient
    there. The ONNX export folds batch norms into convs: equal up to float rounding (1e-5 of the peak)."""
    original, onnx_model, _ = onnx_copy(name)
    reference = ConvLensModel(original.spec, copy.deepcopy(original.net))
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    x = to_tensor(fit_image(chelsea, (64, 64)))
    ours, target = relu_rule_gradient(onnx_model, x, rule)
    theirs = peer(reference).attribute(x.clone(), target=target["index"])
    plain, _, _ = class_gradient(original, x, target["index"])
    scale = float(theirs.abs().max())
    assert float((ours - theirs).abs().max()) <= 1e-5 * scale
    if name == "shufflenet_v2_x0_5":
        assert float((plain - theirs).abs().max()) > 0.1 * scale  # the rule changed the map

def test_guided_gradient_never_negative_through_a_relu_right_after_the_input():
    """With the first op a ReLU, guided backprop's pixel gradient is non-negative wherever a rule applies."""
    net = nn.Sequential(nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.LazyLinear(5))
    net(torch.zeros(1, 3, 8, 8))
    model = wrap(seeded(net), "first_relu", size=8, classes=5)
    grad, _ = relu_rule_gradient(model, torch.rand(1, 3, 8, 8), "guided", index=0)
    assert (grad >= 0).all() and (grad > 0).any()


def test_layer_target_on_vgg19_needs_no_classifier(vgg19, chelsea):
    x = to_tensor(fit_image(chelsea, (64, 64)))
    unit = UnitTarget.checked(vgg19, "block3_conv2", 5, (4, 4), "mean", (64, 64))
    grad, target = relu_rule_gradient(vgg19, x, "guided", unit=unit)
    assert target["layer"] == "block3_conv2" and target["neuron"] == [4, 4]
    # a neuron at (4, 4) of a stride-4 layer sees only a small square around (18, 18)
    mass = grad[0].abs().sum(0)
    assert mass[:, 40:].sum() == 0 and mass[40:, :].sum() == 0 and mass.sum() > 0


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            x = F.relu(x)
        return x.mean((2, 3))


class InplaceAlias(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        F.relu(y, inplace=True)  # the result is read through y, not through the call
        return (y * 2).mean((2, 3))


class HiddenReLU(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0)
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        tokens = self.conv(x).flatten(2).transpose(1, 2)
        return self.block(tokens).mean(1)


@pytest.mark.parametrize("net, reason", [(Untraceable, "trace"), (InplaceAlias, "in-place"), (HiddenReLU, "hides")])
def test_models_that_cannot_be_rewritten_are_refused(net, reason):
    model = wrap(net().eval(), "odd", size=8, classes=4)
    with pytest.raises(UnsupportedModel, match=reason):
        relu_rule_gradient(model, torch.rand(1, 3, 8, 8), "guided", index=0)


def test_a_module_reused_twice_is_no_layer_target(mixed):
    unit = UnitTarget("shared", 0)
    with pytest.raises(UnsupportedModel, match="2 times"):
        relu_rule_gradient(mixed, torch.rand(1, 3, 32, 32), "guided", unit=unit)
