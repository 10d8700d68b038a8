"""Batch norms folded into convs: same outputs and input gradients, the caller's model untouched."""

import torch

from engine.models.folding import folded
from engine.attribution.gradients import class_gradient
from engine.imaging import fit_image, to_tensor
from tests.engine.tiny_nets import ModuleReLUNet, seeded, wrap


def test_folded_efficientnet_matches_and_leaves_the_model_alone(efficientnet, chelsea):
    before = {k: v.clone() for k, v in efficientnet.state_dict().items()}
    copy = folded(efficientnet)
    assert copy is not efficientnet and copy is folded(efficientnet)  # built once
    kinds = [n.target for n in copy.graph.nodes if n.op == "call_function"]
    assert torch.nn.functional.batch_norm not in kinds
    x = to_tensor(fit_image(chelsea, (96, 96)))
    with torch.inference_mode():
        assert torch.allclose(copy(x), efficientnet(x), atol=1e-4)
    ours, _, _ = class_gradient(copy, x, 285)
    plain, _, _ = class_gradient(efficientnet, x, 285)
    assert torch.allclose(ours, plain, atol=1e-6 * float(plain.abs().max()) + 1e-9, rtol=1e-4)
    after = efficientnet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(p.requires_grad for p in copy.parameters())


def test_a_network_without_batch_norm_is_used_as_it_is():
    model = wrap(seeded(ModuleReLUNet()))
    assert folded(model) is model
