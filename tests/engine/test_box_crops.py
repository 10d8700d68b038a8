"""The batched crops and pastes incremental occlusion runs on GPUs equal a slice copy per window."""

import numpy as np
import pytest
import torch

from engine.attribution.box_crops import crops, pasted


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("pictures", [1, 5])
def test_crops_equal_a_slice_per_window(channels_last, pictures):
    rng = np.random.default_rng(0)
    source = torch.randn(pictures, 4, 12, 10)
    if channels_last:
        source = source.contiguous(memory_format=torch.channels_last)
    first = (rng.integers(0, 12 - 5, 5), rng.integers(0, 10 - 3, 5))
    expected = torch.stack([source[i % pictures, :, y : y + 5, x : x + 3] for i, (y, x) in enumerate(zip(*first))])
    assert torch.equal(crops(source, first, (5, 3)), expected)
    out = torch.full_like(expected, float("nan"))
    assert crops(source, first, (5, 3), out=out) is out and torch.equal(out, expected)
    with pytest.raises(ValueError):
        crops(source, (first[0] + 12, first[1]), (5, 3))


def test_pasted_clips_each_patch_at_the_border():
    target, patch = torch.randn(4, 3, 9, 8), torch.randn(4, 3, 5, 4)
    offset = (np.array([-2, 0, 6, 3]), np.array([5, -3, 1, 2]))  # out at the top, left, bottom and right; inside
    expected = target.clone()
    for i, (oy, ox) in enumerate(zip(*offset)):
        y0, y1, x0, x1 = max(oy, 0), min(oy + 5, 9), max(ox, 0), min(ox + 4, 8)
        expected[i, :, y0:y1, x0:x1] = patch[i, :, y0 - oy : y1 - oy, x0 - ox : x1 - ox]
    pasted(target, patch, offset)
    assert torch.equal(target, expected)
