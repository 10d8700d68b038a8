"""One answer to "does this node overwrite its input?", for every graph rewrite."""

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from engine.fx_nodes import overwrites_input


class EveryForm(nn.Module):
    def __init__(self):
        super().__init__()
        self.module_inplace, self.module_copy = nn.ReLU(inplace=True), nn.ReLU()

    def forward(self, x):
        a = self.module_inplace(x + 1)
        b = self.module_copy(a)
        c = F.relu_(b + 1)
        d = F.relu(c + 1, inplace=True)
        e = (d + 1).relu_()
        return torch.relu(F.relu(e))


def test_every_way_of_writing_in_place_is_recognised_and_nothing_else():
    gm = fx.symbolic_trace(EveryForm())
    activations = [node for node in gm.graph.nodes if node.op in ("call_module", "call_function", "call_method") and node.target is not operator.add]
    assert [overwrites_input(node, gm) for node in activations] == [True, False, True, True, True, False, False]
