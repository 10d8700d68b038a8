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
        assert maps[p["image"]["position"], y, x] == pytest.approx(p["activation"], rel=1e-5)
        assert p["box"] == list(field.box(y, x)) and p["box"][2] - p["box"][0] == 10
        left, top, right, bottom = p["box_in_image"]
        assert 0 <= left < right <= 64 and 0 <= top < bottom <= 64
    json.dumps(result.data)
    assert hook_count(vgg19) == 0


def test_one_patch_per_image_ranks_images_by_their_peak(vgg19, photos):
    params = {"layer": "block3_conv1", "channel": 5, "top_k": 4, "size": 64}
    result = run_method("max_activating_patches", "vgg19", {"images": photos}, params, device="cpu")
    peaks = brute_force(vgg19, photos, "block3_conv1", 5, 64).reshape(len(photos), -1).max(1)
    assert [p["image"]["position"] for p in result.data["patches"]] == np.argsort(-peaks, kind="stable")[:4].tolist()
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


BORDER = (124, 116, 104)


@pytest.mark.parametrize("model_name, layer, channel", [("vgg19", "block3_conv2", 40), ("efficientnet_lite0", "blocks.2", 7)])
def test_each_patch_alone_reproduces_its_activation_and_the_order(request, model_name, layer, channel, photos):
    """A patch pasted alone on a blank canvas, at its place, gives its unit the reported value:
    the unit sees nothing outside the computed receptive field, so the order is the reported one."""
    model = request.getfixturevalue({"vgg19": "vgg19", "efficientnet_lite0": "efficientnet"}[model_name])
    size = 96
    params = {"layer": layer, "channel": channel, "top_k": 6, "per_image": 2, "size": size}
    result = run_method("max_activating_patches", model_name, {"images": photos}, params, device="cpu")
    field = receptive_field(model, layer, (size, size))
    pixels = result.arrays["patch_pixels"]
    assert pixels.shape[1:3] == tuple(field.as_dict()["size"]) == (field.rows.size, field.cols.size)
    canvases = []
    for found, patch in zip(result.data["patches"], pixels):
        left, top, right, bottom = found["box"]
        inner = found["box_in_image"]
        canvas = np.empty((size, size, 3), np.uint8)
        canvas[:] = BORDER
        canvas[inner[1] : inner[3], inner[0] : inner[2]] = patch[inner[1] - top : inner[3] - top, inner[0] - left : inner[2] - left]
        canvases.append(canvas)
    batch = torch.from_numpy(np.stack(canvases)).permute(0, 3, 1, 2).float() / 255
    maps = []
    handle = model.layer(layer).register_forward_hook(lambda _m, _i, out: maps.append(out[:, channel]))
    try:
        with torch.no_grad():
            model(batch)
    finally:
        handle.remove()
    again = [float(maps[0][i, p["position"][0], p["position"][1]]) for i, p in enumerate(result.data["patches"])]
    reported = [p["activation"] for p in result.data["patches"]]
    np.testing.assert_allclose(again, reported, rtol=1e-4, atol=1e-4)
    assert np.argsort(-np.array(again), kind="stable").tolist() == list(range(len(again)))


def test_channel_overview_ranks_channels_by_their_mean_peak(vgg19, photos):
    params = {"layer": "block2_conv1", "top_k": 5, "size": 64}
    result = run_method("channel_overview", "vgg19", {"images": photos}, params, device="cpu")
    batch = torch.cat([to_tensor(fit_image(img, (64, 64))) for img in photos])
    with torch.no_grad():
        maps = vgg19.net[: list(dict(vgg19.net.named_children())).index("block2_conv1") + 1](vgg19.normalize(batch)).numpy()
    mean_peaks = maps.reshape(len(photos), 128, -1).max(2).mean(0)
    assert [c["channel"] for c in result.data["channels"]] == np.argsort(-mean_peaks, kind="stable")[:5].tolist()
    np.testing.assert_allclose(result.arrays["mean_peaks"], mean_peaks, rtol=1e-5)
    assert result.images["overview"].size[0] > 64
