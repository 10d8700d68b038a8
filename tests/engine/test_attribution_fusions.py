"""Exported GELUs and linear layers become one call in occlusion's trace, computing the same function."""

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from engine.attribution.fusions import fuse_exported_patterns
from engine.models.formats import onnx_network
from tests.engine.tiny_nets import seeded
from tests.model_files import onnx_bytes


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 4)
        self.bias = nn.Parameter(torch.rand(16))

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        y = F.gelu(self.up(x))  # exported as Div, Erf, Add, Mul, Mul and MatMul, Add: both fused
        z = x @ self.up.weight.t()
        z = (z + self.bias) * z  # the MatMul's output is read twice: not a linear layer, left alone
        w = x.erf() * 0.5  # an Erf outside a GELU: left alone
        return self.down(y + z).mean((1, 2)) + w.mean((1, 2, 3))[:, None]


def calls(gm: fx.GraphModule) -> list[str]:
    return [getattr(n.target, "__name__", str(n.target)) for n in gm.graph.nodes if n.op == "call_function"]


def test_exported_patterns_are_fused_and_compute_the_same_function():
    network = onnx_network(onnx_bytes(seeded(Mlp()), (8, 8)))
    fused = fuse_exported_patterns(fx.symbolic_trace(network))
    names = calls(fused)
    assert names.count("gelu") == 1 and names.count("linear") == 2  # up and down
    assert names.count("erf") == 1 and names.count("matmul") == 1  # the ones that are no GELU / linear layer
    x = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        expected = network(x)
        torch.testing.assert_close(fused(x), expected, rtol=1e-6, atol=1e-6 * expected.abs().max().item())
    assert "erf" in calls(fx.symbolic_trace(network))  # the caller's network is untouched
