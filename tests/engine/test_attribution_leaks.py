"""After 100 calls of each attribution method the model has no hooks, its own modules and flat memory."""

import gc

import pytest
import torch

from engine.hooks import hook_count
from engine.progress import no_progress
from engine.registry import all_methods, get_method, parse_params
from tests.engine.tiny_nets import MixedActivationNet, seeded, wrap

CALLS = 100
# every inline attribution method of the registry, with the params that fit the tiny network (others: none)
ATTRIBUTIONS = sorted(m.name for m in all_methods() if m.category == "attribute" and m.inline and m.run.__module__.startswith("engine."))
PARAMS = {
    "deconvnet": {"layer": "conv4", "channel": 2},
    "gradcam": {"layer": "conv4"},
    "smoothgrad": {"samples": 2},
    "integrated_gradients": {"steps": 3},
    "occlusion": {"window": 8, "stride": 8},
    "segmentation": {"steps": 1},
}


def live_tensors() -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, torch.Tensor))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture(scope="module")
def model():
    return wrap(seeded(MixedActivationNet(), seed=1))


@pytest.mark.parametrize("name", ATTRIBUTIONS)
def test_hundred_calls_leave_no_trace(model, chelsea, name):
    method = get_method(name)
    params = parse_params(method, PARAMS.get(name, {}))
    image = chelsea.resize((48, 40))
    modules = [(n, id(m)) for n, m in model.named_modules()]
    method.run(model, {"image": image}, params, no_progress)  # warm-up: traces and caches are built once
    tensors, rss = live_tensors(), rss_bytes()
    for _ in range(CALLS):
        result = method.run(model, {"image": image}, params, no_progress)
    del result
    assert hook_count(model) == 0
    assert [(n, id(m)) for n, m in model.named_modules()] == modules
    assert not any(p.requires_grad for p in model.parameters())
    assert live_tensors() <= tensors
    assert rss_bytes() - rss < 20 * 2**20
