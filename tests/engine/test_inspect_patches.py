"""Receptive fields (analytic vs measured gradient support) and max_activating_patches."""

import json

import numpy as np
import pytest
import torch

from engine.errors import InvalidParams, UnknownChannel, UnknownLayer
from engine.hooks import hook_count
from engine.imaging import fit_image, to_tensor
from engine.inspect.receptive_field import receptive_field
from engine.run import run_method


def gradient_support(model, layer: str, size: int, y: int, x: int) -> tuple[int, int, int, int]:
    """Bounding box (left, top, right, bottom) of input pixels whose gradient reaches unit (y, x) of ``layer``.

    Summing over all channels at the position makes a dead ReLU or a max-pool
    choice in one channel unlikely to hide a pixel the field covers.
    """
    torch.manual_seed(0)
    image = torch.rand(1, 3, size, size, requires_grad=True)
    seen = []
    handle = model.layer(layer).register_forward_hook(lambda _m, _i, out: seen.append(out))
    try:
        model(image)
    finally:
        handle.remove()
    seen[0][0, :, y, x].sum().backward()
    rows, cols = np.nonzero(image.grad[0].abs().sum(0).numpy())
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


@pytest.mark.parametrize(
    "layer, size, stride",
    [("block1_conv1", 3, 1), ("block1_relu2", 5, 1), ("block2_conv1", 10, 2), ("block2_pool", 16, 4), ("block3_conv1", 24, 4)],
)
def test_vgg19_receptive_field_equals_the_measured_gradient_support(vgg19, layer, size, stride):
    field = receptive_field(vgg19, layer, (64, 64))
    assert (field.rows.size, field.rows.stride) == (size, stride) and field.rows == field.cols
    assert gradient_support(vgg19, layer, 64, 5, 6) == field.box(5, 6)
    left, top, _, _ = field.box(0, 0)  # at the border the field reaches into the padding
    assert gradient_support(vgg19, layer, 64, 0, 0)[:2] == (max(left, 0), max(top, 0))
    assert hook_count(vgg19) == 0


@pytest.mark.parametrize("layer", ["conv_stem", "blocks.0", "blocks.1"])
def test_efficientnet_receptive_field_equals_the_measured_gradient_support(efficientnet, layer):
    field = receptive_field(efficientnet, layer, (96, 96))
    assert gradient_support(efficientnet, layer, 96, 9, 10) == field.box(9, 10)


def brute_force(model, images, layer: str, channel: int, size: int) -> np.ndarray:
    batch = torch.cat([to_tensor(fit_image(img, (size, size))) for img in images])
    seen = []
    handle = model.layer(layer).register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        handle.remove()
    return seen[0][:, channel].numpy()


@pytest.fixture(scope="module")
def photos(chelsea, coffee, astronaut, sample_images):
    return [chelsea, coffee, astronaut, *sample_images]


def test_patches_are_the_true_top_k_over_all_positions(vgg19, photos):
    params = {"layer": "block2_conv1", "channel": 17, "top_k": 10, "per_image": 64, "size": 64, "batch_size": 2}
    result = run_method("max_activating_patches", "vgg19", {"images": photos}, params, device="cpu")
    maps = brute_force(vgg19, photos, "block2_conv1", 17, 64)
    found = result.data["patches"]
    np.testing.assert_allclose([p["activation"] for p in found], np.sort(maps.ravel())[::-1][:10], rtol=1e-5)
    field = receptive_field(vgg19, "block2_conv1", (64, 64))
    for p in found:
        y, x = p["position"]
        assert maps[p["image"], y, x] == pytest.approx(p["activation"], rel=1e-5)
        assert p["box"] == list(field.box(y, x)) and p["box"][2] - p["box"][0] == 10
        left, top, right, bottom = p["box_in_image"]
        assert 0 <= left < right <= 64 and 0 <= top < bottom <= 64
    json.dumps(result.data)
    assert hook_count(vgg19) == 0


def test_one_patch_per_image_ranks_images_by_their_peak(vgg19, photos):
    params = {"layer": "block3_conv1", "channel": 5, "top_k": 4, "size": 64}
    result = run_method("max_activating_patches", "vgg19", {"images": photos}, params, device="cpu")
    peaks = brute_force(vgg19, photos, "block3_conv1", 5, 64).reshape(len(photos), -1).max(1)
    assert [p["image"] for p in result.data["patches"]] == np.argsort(-peaks, kind="stable")[:4].tolist()
    np.testing.assert_allclose([p["activation"] for p in result.data["patches"]], np.sort(peaks)[::-1][:4], rtol=1e-5)
    assert result.data["receptive_field"] == {"size": [24, 24], "stride": [4, 4], "offset": [-10, -10]}
    grid = result.images["patches"]
    assert grid.size == (2 * 65 + 1, 2 * (64 + 14 + 1) + 1)  # 2x2 tiles of 64 px with a caption strip


def test_batch_size_never_changes_the_patches(efficientnet, photos):
    params = {"layer": "blocks.2", "channel": 3, "top_k": 5, "per_image": 2, "size": 96}
    one = run_method("max_activating_patches", "efficientnet_lite0", {"images": photos}, {**params, "batch_size": 1}, device="cpu")
    all_ = run_method("max_activating_patches", "efficientnet_lite0", {"images": photos}, {**params, "batch_size": 5}, device="cpu")
    assert [(p["image"], p["position"]) for p in one.data["patches"]] == [(p["image"], p["position"]) for p in all_.data["patches"]]
    np.testing.assert_allclose(one.arrays["maps"], all_.arrays["maps"], rtol=1e-4, atol=1e-4)
    assert hook_count(efficientnet) == 0


def test_bad_layer_or_channel_raise_engine_errors(vgg19, efficientnet, photos):
    with pytest.raises(UnknownChannel, match="64 channels"):
        run_method("max_activating_patches", "vgg19", {"images": photos}, {"layer": "block1_conv1", "channel": 64, "size": 64}, device="cpu")
    with pytest.raises(UnknownLayer):
        run_method("max_activating_patches", "vgg19", {"images": photos}, {"layer": "block9_conv1", "size": 64}, device="cpu")
    with pytest.raises(InvalidParams, match="vector"):
        run_method("max_activating_patches", "efficientnet_lite0", {"images": photos}, {"layer": "classifier", "size": 64}, device="cpu")
    assert hook_count(vgg19) == 0 and hook_count(efficientnet) == 0
