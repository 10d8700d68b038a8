"""Receptive-field occlusion through position-wise operations on other layouts than NCHW.

Each network here runs its occlusion twice, on the receptive-field plan and by
brute force (every occluded picture through the whole network), and the two
maps must agree; the test also checks that the operations it is about were
planned on boxes (a plan that ran them on whole tensors would agree too).
Tiny networks run both as traced PyTorch and as their ONNX export; the ONNX
copies of torchvision's ConvNeXt and ShuffleNet have random weights (format
tests, see tests/engine/onnx_copies.py).
"""

import pytest
import torch
from torch import nn

from engine.attribution.incremental import IncrementalOcclusion
from engine.attribution.occlusion import occlusion_drops, window_grid
from engine.imaging import fit_image, to_tensor
from engine.models.folding import folded
from engine.models.formats import onnx_network
from tests.engine.onnx_copies import onnx_copy
from tests.engine.tiny_nets import seeded, wrap
from tests.model_files import onnx_bytes

FILL = (0.1, 0.2, 0.3)
TOLERANCE = 1e-5  # of the output's scale (largest |logit|; 1 for probabilities): a box rounds unlike a whole tensor


class ChannelsLastBlock(nn.Module):
    """ConvNeXt's block: depthwise conv, permute, LayerNorm and an MLP over channels, permute back,
    layer scale, residual sum; then its downsampling LayerNorm between permutes and a strided conv."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.dw = nn.Conv2d(c, c, 5, padding=2, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.up, self.act = nn.Linear(c, 2 * c), nn.GELU()
        self.down = nn.Parameter(torch.rand(2 * c, c))  # a bias-free MatMul: nothing for a fusion to take
        self.scale = nn.Parameter(torch.rand(c, 1, 1))
        self.norm2 = nn.LayerNorm(c)
        self.reduce = nn.Conv2d(c, 2 * c, 2, stride=2)
        self.head = nn.Linear(2 * c, 5)

    def forward(self, x):
        x = self.conv1(x)
        y = (self.act(self.up(self.norm(self.dw(x).permute(0, 2, 3, 1)))) @ self.down).permute(0, 3, 1, 2)
        x = x + self.scale * y
        x = self.norm2(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(self.reduce(x).mean((2, 3)))


class ChannelsFirstNorm(nn.Module):
    """LayerNorm over channels written out (the original ConvNeXt's channels-first norm): ONNX exports it
    as ReduceMean, Sub, Pow, Sqrt and Div."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.weight, self.bias = nn.Parameter(torch.rand(c)), nn.Parameter(torch.rand(c))
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        x = self.conv1(x)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + 1e-6)
        x = self.weight[:, None, None] * x + self.bias[:, None, None]
        return self.head(self.conv2(torch.erf(x)).mean((2, 3)))


class ShuffleSplit(nn.Module):
    """ShuffleNet V2's unit: split the channels, a grouped and a depthwise conv on one half, concatenate,
    shuffle the channels (view, transpose, view); then a slice of the channels."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.branch = nn.Sequential(
            nn.Conv2d(c // 2, c // 2, 1, groups=2), nn.BatchNorm2d(c // 2), nn.ReLU(),
            nn.Conv2d(c // 2, c // 2, 3, padding=1, groups=c // 2), nn.ReLU(),
        )
        self.conv2 = nn.Conv2d(c // 2, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = self.conv1(x)
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        return self.head(self.conv2(x[:, : c // 2]).mean((2, 3)))


class SqueezeExcite(nn.Module):
    """Global operations (squeeze-and-excitation's pooling, attention over positions) stay on whole tensors."""

    def __init__(self, c: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(c, 4), nn.Linear(4, c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3))))))
        x = self.conv2(x * gate[:, :, None, None])
        tokens = x.flatten(2).transpose(1, 2)  # (n, positions, c)
        attended = torch.softmax(tokens @ tokens.transpose(1, 2), -1) @ tokens
        return self.head(attended.mean(1))


def picture(image, size):
    return to_tensor(fit_image(image, (size, size)))


def planned_on_boxes(model, x, window, stride) -> set[str]:
    """What kinds of operation the plan runs on boxes (strictly inside the map)."""
    net = folded(model)
    plan = IncrementalOcclusion(net, x, window_grid(*x.shape[-2:], window, stride)).plan
    names = set()
    for node, step in plan.items():
        if step.kind == "local" and node.op != "placeholder":
            if node.op == "call_module":
                names.add(type(net.get_submodule(node.target)).__name__)
            else:
                names.add(getattr(node.target, "__name__", str(node.target)))
    return names


def assert_same_maps(model, x, window, stride):
    fast = occlusion_drops(model, x, None, window, stride, FILL, 7, "auto")
    slow = occlusion_drops(model, x, None, window, stride, FILL, 7, "brute_force")
    assert fast["strategy"] == "receptive_field" and slow["strategy"] == "brute_force"
    logit_scale = float(slow["logits"].abs().max())
    assert float(slow["maps"]["logit"].abs().max()) > 100 * TOLERANCE * logit_scale  # occluding changes the output
    for name, scale in (("probability", 1.0), ("logit", logit_scale)):
        assert float((fast["maps"][name] - slow["maps"][name]).abs().max()) <= TOLERANCE * scale, name


def tiny(make, seed, onnx: bool):
    net = seeded(make(), seed=seed)
    if onnx:
        net = onnx_network(onnx_bytes(net, (32, 32)))
    return wrap(net, make.__name__, size=32, classes=5)


@pytest.mark.parametrize("onnx", [False, True], ids=["traced", "onnx"])
@pytest.mark.parametrize(
    "make, seed, expected",
    [
        (ChannelsLastBlock, 1, {"permute", "LayerNorm", "Linear|linear", "GELU|gelu", "matmul", "mul"}),
        (ChannelsFirstNorm, 2, {"mean", "sub", "pow", "sqrt", "div|truediv", "erf"}),
        (ShuffleSplit, 3, {"chunk|onnx_slice", "cat", "view|onnx_reshape", "transpose|permute", "getitem|onnx_slice"}),
    ],
)
def test_position_wise_blocks_run_on_boxes_and_equal_brute_force(coffee, make, seed, expected, onnx):
    model = tiny(make, seed, onnx)
    x = picture(coffee, 32)
    boxed = planned_on_boxes(model, x, 4, 4)
    missing = [kinds for kinds in expected if not set(kinds.split("|")) & boxed]
    assert not missing, f"not planned on boxes: {missing} (boxed: {sorted(boxed)})"
    for window, stride in ((4, 4), (7, 5), (12, 10)):  # 7/5 and 12/10 clip windows at the border
        assert_same_maps(model, x, window, stride)


@pytest.mark.parametrize("onnx", [False, True], ids=["traced", "onnx"])
def test_global_operations_still_run_on_whole_tensors(coffee, onnx):
    model = tiny(SqueezeExcite, 4, onnx)
    x = picture(coffee, 32)
    assert planned_on_boxes(model, x, 4, 4) >= {"Conv2d"}
    assert_same_maps(model, x, 6, 4)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("convnext_tiny", {"permute", "LayerNorm", "linear", "gelu", "add", "mul"}),  # fused from the export
        ("shufflenet_v2_x0_5", {"onnx_reshape", "permute", "onnx_slice", "cat", "Conv2d", "ReLU"}),
    ],
)
def test_onnx_copies_of_torchvision_networks_use_the_plan_and_equal_brute_force(coffee, name, expected):
    _, model, _ = onnx_copy(name)
    x = picture(coffee, 64)
    assert planned_on_boxes(model, x, 8, 8) >= expected
    for window, stride in ((16, 8), (20, 12), (8, 8)):  # 20/12 clips the last row and column at the border
        assert_same_maps(model, x, window, stride)


def test_reshapes_and_convolutions_that_mix_axes_are_not_planned_on_boxes(coffee):
    class Mixing(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            x = self.conv1(x)
            n, c, h, w = x.shape
            merged = x.reshape(n * c, 1, h, w)  # copies and channels in one dim
            swapped = self.conv2(x.transpose(2, 3))  # a convolution over (columns, rows)
            return (merged.reshape(n, c, h, w) + swapped).mean((2, 3))

    model = wrap(seeded(Mixing(), seed=6), "mixing", size=16, classes=4)
    x = picture(coffee, 16)
    boxed = planned_on_boxes(model, x, 3, 3)
    assert "transpose" in boxed and "Conv2d" in boxed  # conv1, and the transpose itself
    assert "reshape" not in boxed
    plan = IncrementalOcclusion(folded(model), x, window_grid(16, 16, 3, 3)).plan
    assert [step.kind for node, step in plan.items() if node.target == "net.conv2"] == ["full"]
    assert_same_maps(model, x, 3, 3)
