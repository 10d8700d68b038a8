"""Occlusion: batch size never changes the map, the receptive-field path equals brute force, OOM halves the batch."""

import numpy as np
import pytest
import torch
from torch import nn

from engine.attribution.incremental import IncrementalOcclusion
from engine.attribution.occlusion import occlusion_drops, window_grid
from engine.errors import InvalidParams
from engine.imaging import fit_image, to_tensor
from tests.engine.tiny_nets import MixedActivationNet, ModuleReLUNet, seeded, wrap

FILL = (0.1, 0.2, 0.3)


class PoolingResidualNet(nn.Module):
    """Strided and dilated convs, avg/max pools with padding, a residual sum, odd sizes."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5, stride=2, padding=2)
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=2, dilation=2)
        self.bn = nn.BatchNorm2d(6)
        self.pool2 = nn.AvgPool2d(3, stride=1, padding=1)
        self.head = nn.Linear(6, 7)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = x + self.pool2(torch.sigmoid(self.bn(self.conv2(x))))
        return self.head(x.amax((2, 3)))


def pooled_model():
    net = seeded(PoolingResidualNet(), seed=5)
    net.bn.running_var.fill_(2.0)
    return wrap(net, "pooling", size=37, classes=7)


@pytest.fixture(scope="module")
def tiny():
    return wrap(seeded(ModuleReLUNet()))


def picture(image, size):
    return to_tensor(fit_image(image, (size, size)))


def test_window_grid_covers_every_pixel_and_clips_at_the_border():
    windows = window_grid(37, 37, 8, 6)
    assert len(windows) == 36 and windows[-1] == (30, 37, 30, 37)
    with pytest.raises(InvalidParams):
        window_grid(16, 16, 17, 4)
    with pytest.raises(InvalidParams, match="stride 9 is larger than window 8"):
        window_grid(16, 16, 8, 9)


@pytest.mark.parametrize("strategy", ["auto", "brute_force"])
def test_every_batch_size_gives_the_same_map(tiny, chelsea, strategy):
    x = picture(chelsea, 32)
    maps = [occlusion_drops(tiny, x, 1, 8, 3, FILL, size, strategy)["maps"]["probability"] for size in (1, 3, 7, 1000)]
    for other in maps[1:]:
        assert torch.allclose(maps[0], other, atol=1e-7)
    assert maps[0].abs().max() > 1e-3


@pytest.mark.parametrize(
    "make, size, window, stride",
    [
        (lambda: wrap(seeded(ModuleReLUNet())), 32, 8, 3),
        (lambda: wrap(seeded(MixedActivationNet(), seed=2)), 32, 5, 4),
        (pooled_model, 37, 7, 5),
    ],
)
def test_receptive_field_path_equals_brute_force(coffee, make, size, window, stride):
    model = make()
    x = picture(coffee, size)
    fast = occlusion_drops(model, x, None, window, stride, FILL, 4, "auto")
    slow = occlusion_drops(model, x, None, window, stride, FILL, 4, "brute_force")
    assert fast["strategy"] == "receptive_field" and slow["strategy"] == "brute_force"
    for name in ("probability", "logit"):
        assert torch.allclose(fast["maps"][name], slow["maps"][name], atol=1e-5)


def test_auto_reports_brute_force_when_no_convolution_runs_on_a_box(coffee):
    """A network that mixes all positions at once (flatten, then linear) leaves the plan nothing to save."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10))
    model = wrap(seeded(net), "dense", size=16)
    x = picture(coffee, 16)
    found = occlusion_drops(model, x, None, 4, 4, FILL, 4, "auto")
    expected = occlusion_drops(model, x, None, 4, 4, FILL, 4, "brute_force")
    assert found["strategy"] == "brute_force"
    assert torch.equal(found["maps"]["logit"], expected["maps"]["logit"])

def test_the_plan_leaves_the_callers_model_untouched(coffee):
    """The plan's trace holds channels-last copies of conv weights; the model keeps its own tensors."""
    model = pooled_model()
    before = {name: (p, p.detach().clone()) for name, p in model.net.state_dict(keep_vars=True).items()}
    assert occlusion_drops(model, picture(coffee, 37), None, 7, 5, FILL, 4, "auto")["strategy"] == "receptive_field"
    after = model.net.state_dict(keep_vars=True)
    assert after.keys() == before.keys()
    for name, (tensor, values) in before.items():
        assert after[name] is tensor and tensor.is_contiguous() and torch.equal(tensor, values), name

def test_receptive_field_path_equals_brute_force_on_efficientnet(efficientnet, chelsea):
    x = picture(chelsea, 224)
    windows = window_grid(224, 224, 32, 16)
    chosen = np.array([0, 1, 14, 84, 90, 155, 168])  # corners, edges and the middle
    fast = IncrementalOcclusion(efficientnet, x, windows).outputs(chosen, torch.tensor(FILL).view(1, 3, 1, 1))
    batch = x.repeat(len(chosen), 1, 1, 1)
    for i, k in enumerate(chosen):
        y0, y1, x0, x1 = windows[k]
        batch[i, :, y0:y1, x0:x1] = torch.tensor(FILL).view(3, 1, 1)
    with torch.inference_mode():
        slow = efficientnet(batch)
    assert torch.allclose(fast, slow, atol=1e-4)


@pytest.mark.parametrize("strategy", ["auto", "brute_force"])
def test_cuda_out_of_memory_halves_the_batch(tiny, chelsea, monkeypatch, strategy):
    x = picture(chelsea, 32)
    expected = occlusion_drops(tiny, x, 2, 8, 4, FILL, 1, strategy)["maps"]["probability"]
    seen = []
    if strategy == "auto":
        original = IncrementalOcclusion.outputs

        def limited(self, chosen, fill):
            seen.append(len(chosen))
            if len(chosen) > 5:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return original(self, chosen, fill)

        monkeypatch.setattr(IncrementalOcclusion, "outputs", limited)
    else:
        original = tiny.forward

        def limited(batch):
            seen.append(batch.shape[0])
            if batch.shape[0] > 5:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return original(batch)

        monkeypatch.setattr(tiny, "forward", limited)
    found = occlusion_drops(tiny, x, 2, 8, 4, FILL, 24, strategy)
    attempts = seen[seen.index(24) :]  # brute force also saw the clean picture first
    assert attempts[:3] == [24, 12, 6] and max(attempts[3:]) == 3
    assert torch.allclose(found["maps"]["probability"], expected, atol=1e-7)
