"""The faster twin gradient ascent runs on: the same function, the same norm statistics,
the served model untouched."""

import copy

import pytest
import torch

from engine.hooks import hook_count
from engine.imaging import fit_image, to_tensor
from engine.models import ConvLensModel
from engine.fx_nodes import overwrites_input
from engine.models.twin import ascent_twin, out_of_place
from engine.optim import objectives as obj
from engine.optim.loop import features_of
from engine.synthesis.class_visualization import batch_norms


def test_the_twin_computes_the_models_outputs_and_input_gradients(efficientnet, chelsea):
    before = {k: v.clone() for k, v in efficientnet.state_dict().items()}
    twin = ascent_twin(efficientnet)
    assert twin is ascent_twin(efficientnet)  # built once
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in twin.model.modules())  # all 49 folded
    assert len(twin.folded_norms) == 49 and set(twin.folded_norms) == set(batch_norms(efficientnet))
    convs = [m for m in twin.model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    x = to_tensor(fit_image(chelsea, (128, 128)))
    grads = []
    for net in (efficientnet, twin.model):
        image = x.clone().requires_grad_(True)
        logits = net(image)
        logits[0, 285].backward()
        grads.append((logits.detach(), image.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[1][1], grads[0][1], atol=1e-5 * float(grads[0][1].abs().max()), rtol=1e-3)
    after = efficientnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in twin.model.parameters())


def test_the_norm_statistics_read_from_the_folded_convs_equal_the_norms_inputs(efficientnet, chelsea):
    # the prior on the model reads each norm's input; on the twin, the folded conv's output, which an
    # in-place activation after it would overwrite (the twin's activations write new tensors). The
    # reference: the prior on the model's float64 copy.
    twin = ascent_twin(efficientnet)
    norms = batch_norms(efficientnet)
    on_twin = obj.natural_statistics(norms, twin.folded_norms)
    assert on_twin.layers == set(twin.folded_norms.values())
    exact = ConvLensModel(efficientnet.spec, copy.deepcopy(efficientnet.net)).double()
    photo = to_tensor(fit_image(chelsea, (160, 160)))
    values = []
    for net, prior, x in ((exact, obj.natural_statistics(batch_norms(exact)), photo.double()), (twin.model, on_twin, photo)):
        image = x.clone().requires_grad_(True)
        value = prior(features_of(net, prior, image), image)
        value.backward()
        values.append((float(value.detach()), image.grad.double()))
    (reference, reference_grad), (value, grad) = values
    assert abs(value - reference) < 1e-4 * reference
    assert float((grad - reference_grad).norm() / reference_grad.norm()) < 5e-3  # float32 rounding (0.1% seen)
    assert hook_count(efficientnet) == 0 and hook_count(twin.model) == 0


def test_a_network_without_batch_norms_has_no_twin(vgg19):
    assert ascent_twin(vgg19) is None


class _ModuleInPlace(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.act = torch.nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(x * 2) - 1


class _MethodInPlace(torch.nn.Module):
    def forward(self, x):
        y = x * 2
        y.relu_()
        return y


class _ReadsTheOverwrittenInput(torch.nn.Module):
    def forward(self, x):
        y = x * 2
        return torch.nn.functional.relu(y, inplace=True) + y


@pytest.mark.parametrize("net, rewritten", [(_ModuleInPlace, True), (_MethodInPlace, False), (_ReadsTheOverwrittenInput, False)])
def test_in_place_activations_are_rewritten_only_where_the_function_stays_the_same(net, rewritten):
    graph = torch.fx.symbolic_trace(net())
    x = torch.randn(2, 5, generator=torch.Generator().manual_seed(0))
    expected = net()(x.clone())
    assert out_of_place(graph) is rewritten
    if rewritten:
        assert not any(overwrites_input(node, graph) for node in graph.graph.nodes)
    torch.testing.assert_close(graph(x.clone()), expected)


def test_the_twin_lives_on_the_models_device():
    # a new ConvLensModel makes its preprocessing buffers on the CPU; on a CUDA model the twin's
    # normalisation would then meet CUDA pictures. The meta device stands in for CUDA here.
    from torch import nn

    from tests.engine.tiny_nets import seeded, wrap

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    model = wrap(seeded(net)).to("meta")
    twin = ascent_twin(model)
    assert twin.model.device == model.device == torch.device("meta")
    assert all(t.device == model.device for t in (*twin.model.parameters(), *twin.model.buffers()))
