"""Numeric agreement with Captum and pytorch-grad-cam on the same model and input."""

import numpy as np
import pytest
import torch
from captum.attr import Deconvolution, GuidedBackprop, IntegratedGradients, NoiseTunnel, Occlusion, Saliency

from engine.attribution.gradcam import gradcam_maps
from engine.attribution.gradients import class_gradient, pooled_gradients
from engine.attribution.guided_backprop import relu_rule_gradient
from engine.attribution.integrated_gradients import integrated_gradients
from engine.attribution.occlusion import occlusion_drops
from engine.attribution.smoothgrad import noisy_copies
from engine.imaging import fit_image, to_tensor
from engine.models.folding import folded
from engine.run import run_method
from tests.engine.tiny_nets import ModuleReLUNet, seeded, wrap

FILL = (0.3, 0.5, 0.7)


@pytest.fixture(scope="module")
def tiny():
    return wrap(seeded(ModuleReLUNet()))


@pytest.fixture(scope="module")
def picture(chelsea):
    return to_tensor(fit_image(chelsea, (32, 32)))


@pytest.fixture(scope="module")
def cat224(chelsea):
    return to_tensor(fit_image(chelsea, (224, 224)))


def minmax(values):
    return (values - values.min()) / (values.max() - values.min())


def channel_max_abs(attr):
    return attr[0].abs().amax(0)


def captum_occlusion_map(model, x, target, window, stride, fill):
    def probability(inp):
        return model(inp).softmax(-1)[:, target]

    baseline = torch.tensor(fill).view(1, 3, 1, 1).expand_as(x).clone()
    attr = Occlusion(probability).attribute(
        x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride), baselines=baseline,
        perturbations_per_eval=8,
    )
    assert torch.allclose(attr[0, 0], attr[0, 2])  # one value per pixel, repeated over RGB
    return attr[0, 0]


def test_saliency_matches_captum_on_tiny_relu_net(tiny, picture):
    ours, _, index = class_gradient(tiny, picture, 3)
    theirs = Saliency(tiny).attribute(picture.clone(), target=3, abs=True)
    assert torch.allclose(channel_max_abs(ours), theirs[0].amax(0), atol=1e-7)


@pytest.mark.parametrize("rule, peer", [("guided", GuidedBackprop), ("deconv", Deconvolution)])
def test_relu_rules_match_captum_on_tiny_relu_net(tiny, picture, rule, peer):
    ours, target = relu_rule_gradient(tiny, picture, rule, index=5)
    theirs = peer(tiny).attribute(picture.clone(), target=5)
    plain, _, _ = class_gradient(tiny, picture, 5)
    assert target["index"] == 5
    assert torch.allclose(ours, theirs, atol=1e-7)
    assert not torch.allclose(ours, plain, atol=1e-4)  # the rule changed something


def test_occlusion_matches_captum_on_tiny_relu_net(tiny, picture):
    found = occlusion_drops(tiny, picture, 2, 8, 4, FILL, batch_size=5)
    assert found["strategy"] == "receptive_field"
    theirs = captum_occlusion_map(tiny, picture, 2, 8, 4, FILL)
    assert torch.allclose(found["maps"]["probability"], theirs, atol=1e-6)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_integrated_gradients_match_captum(tiny, picture, method):
    baseline = torch.full_like(picture, 0.2)
    ((ours, delta),) = integrated_gradients(tiny, picture, baseline, [4], 20, method, batch_size=6)
    theirs, their_delta = IntegratedGradients(tiny).attribute(
        picture, baselines=baseline, target=4, n_steps=20, method=method, internal_batch_size=7,
        return_convergence_delta=True,
    )
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert delta == pytest.approx(float(their_delta), abs=1e-4)


@pytest.mark.parametrize("squared", [False, True])
def test_smoothgrad_matches_captum_noise_tunnel_with_the_same_seed(tiny, picture, squared):
    std = 0.2 * float(picture.max() - picture.min())
    (total,) = pooled_gradients(folded(tiny), [noisy_copies(picture, 0.2, samples=6, seed=7)], [1], batch_size=4, squared=squared)
    ours = total / 6
    torch.manual_seed(7)
    theirs = NoiseTunnel(Saliency(tiny)).attribute(
        picture, nt_type="smoothgrad_sq" if squared else "smoothgrad", nt_samples=6, stdevs=std, target=1, abs=False
    )
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_saliency_matches_captum_on_efficientnet(efficientnet, cat224):
    ours, _, index = class_gradient(efficientnet, cat224, None)
    theirs = Saliency(efficientnet).attribute(cat224.clone(), target=index, abs=True)[0].amax(0)
    assert efficientnet.labels[index] == "Egyptian cat"
    assert torch.allclose(channel_max_abs(ours), theirs, atol=1e-7, rtol=1e-5)


def test_saliency_method_matches_captum_on_efficientnet(efficientnet, chelsea):
    """The registered method (channels-last copy, through the registry) against Captum on the plain model."""
    result = run_method("saliency", "efficientnet_lite0", {"image": chelsea}, {}, device="cpu")
    x = to_tensor(fit_image(chelsea, efficientnet.input_size, "crop"))  # efficientnet's evaluation resize, the default
    index = result.data["target"]["index"]
    theirs = Saliency(efficientnet).attribute(x, target=index, abs=True)[0].amax(0)
    ours = torch.from_numpy(result.arrays["map"])
    assert efficientnet.labels[index] == "Egyptian cat"
    assert torch.allclose(ours, theirs, atol=1e-6 * float(theirs.max()), rtol=1e-5)


def test_occlusion_matches_captum_on_efficientnet(efficientnet, chelsea):
    x = to_tensor(fit_image(chelsea, (160, 160)))
    found = occlusion_drops(efficientnet, x, 285, 48, 32, FILL, batch_size=8)
    theirs = captum_occlusion_map(efficientnet, x, 285, 48, 32, FILL)
    assert found["strategy"] == "receptive_field"
    assert torch.allclose(found["maps"]["probability"], theirs, atol=1e-5)


@pytest.mark.parametrize("layer", ["blocks.5.3", "bn2"])
def test_gradcam_matches_pytorch_grad_cam_on_efficientnet(efficientnet, cat224, layer):
    import cv2
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    upsampled, cam, _, (index,) = gradcam_maps(efficientnet, cat224, layer, [285])
    upsampled, cam = upsampled[0], cam[0]
    with GradCAM(model=efficientnet, target_layers=[efficientnet.layer(layer)]) as peer:
        theirs = peer(input_tensor=cat224.clone().requires_grad_(True), targets=[ClassifierOutputTarget(285)])[0]
    # pytorch-grad-cam min-max scales the cam, resizes it with OpenCV, then min-max scales again
    assert np.allclose(minmax(cv2.resize(cam.numpy(), (224, 224))), theirs, atol=1e-5)
    assert np.allclose(minmax(upsampled.numpy()), theirs, atol=1e-5)  # our torch bilinear upsampling agrees
    assert not any(p.requires_grad for p in efficientnet.parameters())
