"""filters: first-layer kernels as RGB tiles, deeper kernels as grey tiles, raw weights returned."""

import json

import numpy as np
import pytest

from engine.errors import InvalidParams, UnknownChannel, UnknownLayer
from engine.hooks import hook_count
from engine.run import run_method


def grid_side(count: int, columns: int, tile: int) -> tuple[int, int]:
    """(width, height) of a tile_grid with 1-pixel padding."""
    rows = -(-count // columns)
    return columns * (tile + 1) + 1, rows * (tile + 1) + 1


def tile_at(grid: np.ndarray, index: int, columns: int, tile: int) -> np.ndarray:
    r, c = divmod(index, columns)
    y, x = 1 + r * (tile + 1), 1 + c * (tile + 1)
    return grid[y : y + tile, x : x + tile]


def test_efficientnet_stem_is_32_rgb_tiles_and_returns_its_weights(efficientnet):
    result = run_method("filters", "efficientnet_lite0", {}, {}, device="cpu")
    grid = result.images["filters"]
    zoom = result.data["zoom"]
    assert zoom * 3 >= 32 and grid.mode == "RGB"
    assert grid.size == grid_side(32, 6, 3 * zoom)
    assert result.data["filters"] == list(range(32)) and result.data["drawn_as"] == "rgb"
    np.testing.assert_array_equal(result.arrays["weights"], efficientnet.net.conv_stem.weight.numpy())
    assert "bias" not in result.arrays  # conv_stem is followed by batch norm
    json.dumps(result.data)
    assert hook_count(efficientnet) == 0


def test_vgg19_first_layer_is_64_rgb_tiles_flipped_from_bgr(vgg19):
    result = run_method("filters", "vgg19", {}, {"tile_size": 9}, device="cpu")
    grid = np.asarray(result.images["filters"])
    weight = vgg19.net.block1_conv1.weight.numpy()
    np.testing.assert_array_equal(result.arrays["weights"], weight)
    np.testing.assert_array_equal(result.arrays["bias"], vgg19.net.block1_conv1.bias.numpy())
    assert result.data["zoom"] == 3 and grid.shape == (8 * 10 + 1, 8 * 10 + 1, 3)
    for index in (0, 17, 63):
        rgb = weight[index][::-1].transpose(1, 2, 0)  # BGR kernel -> RGB channels last
        expected = np.round((rgb - rgb.min()) / (rgb.max() - rgb.min()) * 255).astype(np.uint8)
        drawn = tile_at(grid, index, 8, 9)[::3, ::3]  # undo the nearest-neighbour zoom
        np.testing.assert_array_equal(drawn, expected)
        assert (tile_at(grid, index, 8, 9) == expected.repeat(3, 0).repeat(3, 1)).all()


def test_deeper_conv_is_grey_tiles_one_row_per_filter(vgg19):
    params = {"layer": "block2_conv1", "channels": [5, 1, 5, 7], "max_input_channels": 6, "tile_size": 3}
    result = run_method("filters", "vgg19", {}, params, device="cpu")
    grid = result.images["filters"]
    assert grid.mode == "L" and result.data["drawn_as"] == "grey per input channel"
    assert result.data["filters"] == [5, 1, 7]  # duplicates dropped, order kept
    assert grid.size == grid_side(3 * 6, 6, 3)
    np.testing.assert_array_equal(result.arrays["weights"], vgg19.net.block2_conv1.weight.numpy()[[5, 1, 7]])
    pixels = np.asarray(grid)
    for row in range(3):  # per-filter normalisation: each filter's tiles span the full range together
        tiles = np.stack([tile_at(pixels, row * 6 + c, 6, 3) for c in range(6)])
        assert tiles.max() == 255 and tiles.min() == 0


def test_depthwise_conv_draws_one_tile_per_filter(efficientnet):
    result = run_method("filters", "efficientnet_lite0", {}, {"layer": "blocks.1.0.conv_dw", "max_filters": 10}, device="cpu")
    assert result.data["groups"] == 96 and result.data["input_channels_drawn"] == 1
    assert result.images["filters"].size == grid_side(10, 1, 3 * result.data["zoom"])


def test_global_normalisation_shares_one_scale(vgg19):
    each = np.asarray(run_method("filters", "vgg19", {}, {"tile_size": 3, "max_filters": 16}, device="cpu").images["filters"])
    shared = np.asarray(run_method("filters", "vgg19", {}, {"tile_size": 3, "max_filters": 16, "normalization": "global"}, device="cpu").images["filters"])
    tiles_each = [tile_at(each, i, 4, 3) for i in range(16)]
    tiles_shared = [tile_at(shared, i, 4, 3) for i in range(16)]
    assert all(t.min() == 0 and t.max() == 255 for t in tiles_each)
    assert sum(t.min() == 0 for t in tiles_shared) < 16 and min(t.min() for t in tiles_shared) == 0
    assert max(t.max() for t in tiles_shared) == 255


def test_bad_layers_and_channels_raise_clear_errors(vgg19):
    with pytest.raises(UnknownLayer, match="nope"):
        run_method("filters", "vgg19", {}, {"layer": "nope"}, device="cpu")
    with pytest.raises(InvalidParams, match="block1_relu1.*not a convolution"):
        run_method("filters", "vgg19", {}, {"layer": "block1_relu1"}, device="cpu")
    with pytest.raises(UnknownChannel, match="64 channels"):
        run_method("filters", "vgg19", {}, {"channels": [3, 64]}, device="cpu")
    with pytest.raises(InvalidParams):
        run_method("filters", "vgg19", {}, {"max_filters": 0}, device="cpu")
    assert hook_count(vgg19) == 0
