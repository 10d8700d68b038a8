"""Receptive fields on networks whose paths branch and meet (random weights: a field is the architecture's,
not the weights'). The box of a unit is checked against where its gradient is nonzero, and against values
published or derived by hand."""

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from engine.hooks import capture
from engine.inspect.receptive_field import receptive_field
from tests.engine.tiny_nets import wrap

BRANCHING = {
    # residual sums with strided 1x1 shortcuts, parallel branches joined by concatenation, dense concatenation,
    # channel split + shuffle
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), "layer2", 224),
    "inception_v3": (lambda: torchvision.models.inception_v3(num_classes=10, aux_logits=False, init_weights=False), "Mixed_5b", 299),
    "densenet121": (lambda: torchvision.models.densenet121(num_classes=10), "features.transition1", 224),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=10), "stage2", 224),
}


@pytest.mark.parametrize("name", sorted(BRANCHING))
def test_a_units_box_is_where_its_gradient_is_nonzero(name):
    torch.manual_seed(0)
    build, layer, size = BRANCHING[name]
    model = wrap(build().eval(), name, size, 10)
    field = receptive_field(model, layer, (size, size))
    picture = torch.rand(1, 3, size, size, requires_grad=True)
    with capture({layer: model.layer(layer)}) as outputs:
        model(picture)
    height, width = outputs[layer].shape[-2:]
    y, x = height // 2, width // 2
    outputs[layer][0, :, y, x].sum().backward()
    rows, cols = torch.nonzero(picture.grad[0].abs().sum(0), as_tuple=True)
    left, top, right, bottom = field.box(y, x)
    assert (cols.min().item(), rows.min().item(), cols.max().item() + 1, rows.max().item() + 1) == (
        max(left, 0), max(top, 0), min(right, size), min(bottom, size))


def test_published_and_hand_derived_fields():
    # ResNet-18: conv 7x7/2 p3 and max pool 3x3/2 p1 give 11 px at stride 4 (offset -5); each 3x3 conv then adds
    # 2 x stride; the strided 1x1 shortcuts lie inside the main path's field. layer1..4: 43, 99, 211, 435 px.
    resnet = wrap(torchvision.models.resnet18(num_classes=10).eval(), "resnet18", 224, 10)
    fields = [receptive_field(resnet, f"layer{k}", (224, 224)).as_dict() for k in range(1, 5)]
    assert [(f["size"][0], f["stride"][0], f["offset"][0]) for f in fields] == [(43, 4, -21), (99, 8, -49), (211, 16, -105), (435, 32, -217)]
    # Inception-v3's last block: 1311 px at stride 32 (Araujo et al. 2019, table of published architectures)
    inception = wrap(torchvision.models.inception_v3(num_classes=10, aux_logits=False, init_weights=False).eval(), "inception_v3", 299, 10)
    last = receptive_field(inception, "Mixed_7c", (299, 299)).as_dict()
    assert last["size"] == [1311, 1311] and last["stride"] == [32, 32]


class GatedThenResampled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3)
        self.gate = nn.Conv2d(4, 4, 1)
        self.conv4 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        x = self.conv2(self.conv1(x))
        x = self.conv3(x * torch.sigmoid(self.gate(x.mean((2, 3), keepdim=True))))  # a squeeze-and-excitation gate
        x = self.conv4(F.interpolate(x, scale_factor=2.0))
        return self.fc(x.mean((2, 3)))


def test_a_global_gate_adds_nothing_and_a_resampled_map_sees_the_whole_picture():
    model = wrap(GatedThenResampled().eval(), "gated", 32, 10)
    # three 3x3 convolutions, padded 1, 1 and 0: 7 px from offset -2; the gate's 1 x 1 map adds no position
    assert receptive_field(model, "conv3", (32, 32)).as_dict() == {"size": [7, 7], "stride": [1, 1], "offset": [-2, -2]}
    whole = receptive_field(model, "conv4", (32, 32))
    assert whole.box(0, 0) == whole.box(40, 40) == (0, 0, 32, 32)
