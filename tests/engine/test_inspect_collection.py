"""nearest_neighbors and embedding over a collection of real photos."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from scipy.spatial.distance import cdist
from sklearn.decomposition import PCA

from engine.errors import InputProblem, InvalidParams
from engine.hooks import hook_count
from engine.imaging import fit_image, to_tensor
from engine.run import run_method

NAMES = ["chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "china", "flower", "chelsea mirrored"]


def positions(row: dict) -> list[int]:
    return [neighbor["position"] for neighbor in row["neighbors"]]


def distances(row: dict) -> list[float]:
    return [neighbor["distance"] for neighbor in row["neighbors"]]


@pytest.fixture(scope="module")
def photos(chelsea, coffee, astronaut, sample_images) -> list[Image.Image]:
    """Seven different real photos and a mirrored, cropped copy of chelsea (last)."""
    from skimage import data

    extra = [Image.fromarray(data.rocket()), Image.fromarray(data.immunohistochemistry())]
    copy = ImageOps.mirror(chelsea).crop((30, 15, chelsea.width - 10, chelsea.height - 25))
    return [chelsea, coffee, astronaut, *extra, *sample_images, copy]


def test_chelsea_and_its_mirrored_copy_are_mutual_nearest_neighbors(efficientnet, photos):
    result = run_method("nearest_neighbors", "efficientnet_lite0", {"images": photos}, {"top_k": 4}, device="cpu")
    rows = result.data["neighbors"]
    assert positions(rows[0])[0] == 7 and positions(rows[7])[0] == 0, [NAMES[i] for i in positions(rows[0])]
    for row in rows:
        assert row["query"]["position"] not in positions(row) and len(positions(row)) == 4
        assert distances(row) == sorted(distances(row))
    assert result.data["layer"] == "global_pool" and result.arrays["features"].shape == (8, 1280)
    json.dumps(result.data)
    assert hook_count(efficientnet) == 0


@pytest.mark.parametrize("metric, scipy_metric", [("l2", "euclidean"), ("cosine", "cosine")])
def test_metrics_match_scipy_on_the_returned_features(vgg19, photos, metric, scipy_metric):
    params = {"metric": metric, "top_k": 7, "size": 96, "pooling": "avg"}
    result = run_method("nearest_neighbors", "vgg19", {"images": photos}, params, device="cpu")
    expected = cdist(result.arrays["features"].astype(np.float64), result.arrays["features"].astype(np.float64), scipy_metric)
    for row in result.data["neighbors"]:
        i = row["query"]["position"]
        np.testing.assert_allclose(distances(row), expected[i, positions(row)], rtol=1e-6, atol=1e-9)
        others = np.delete(expected[i], i)
        np.testing.assert_allclose(sorted(distances(row)), np.sort(others)[:7], rtol=1e-6, atol=1e-9)
    assert positions(result.data["neighbors"][0])[0] == 7


def test_query_image_and_pixel_space_comparison(efficientnet, photos, chelsea):
    query = chelsea.crop((60, 20, chelsea.width - 40, chelsea.height))
    inputs = {"images": photos[1:], "query": query}
    result = run_method("nearest_neighbors", "efficientnet_lite0", inputs, {"top_k": 3, "compare_pixels": True, "size": 128, "fit": "stretch"}, device="cpu")
    assert [row["query"] for row in result.data["neighbors"]] == [None]
    assert positions(result.data["neighbors"][0])[0] == 6  # the mirrored chelsea
    pixels = np.stack([to_tensor(fit_image(img, (128, 128))).flatten().numpy() for img in photos[1:]])
    expected = cdist(to_tensor(fit_image(query, (128, 128))).flatten().numpy()[None], pixels)[0]
    pixel_row = result.data["pixel_neighbors"][0]
    assert positions(pixel_row) == np.argsort(expected, kind="stable")[:3].tolist()
    np.testing.assert_allclose(distances(pixel_row), np.sort(expected)[:3], rtol=1e-5)
    assert result.images["neighbors"].size == result.images["pixel_neighbors"].size


def test_batch_size_changes_nothing_and_k_is_clamped_with_a_note(vgg19, photos):
    small = run_method("nearest_neighbors", "vgg19", {"images": photos[:4]}, {"top_k": 10, "size": 64, "batch_size": 1}, device="cpu")
    large = run_method("nearest_neighbors", "vgg19", {"images": photos[:4]}, {"top_k": 10, "size": 64, "batch_size": 4}, device="cpu")
    np.testing.assert_allclose(small.arrays["features"], large.arrays["features"], rtol=1e-4, atol=1e-4)
    assert [positions(r) for r in small.data["neighbors"]] == [positions(r) for r in large.data["neighbors"]]
    assert small.data["k"] == 3 and "k lowered from 10 to 3" in small.data["notes"][0]


def test_collection_methods_report_progress_per_batch(efficientnet, photos):
    seen = []
    run_method("embedding", "efficientnet_lite0", {"images": photos}, {"projection": "pca", "size": 64, "batch_size": 3},
               progress=lambda step, total, preview=None, **info: seen.append((step, total)), device="cpu")
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_pca_embedding_matches_sklearn_on_the_same_features(efficientnet, photos):
    result = run_method("embedding", "efficientnet_lite0", {"images": photos}, {"projection": "pca", "size": 128, "fit": "stretch"}, device="cpu")
    batch = torch.cat([to_tensor(fit_image(img, (128, 128))) for img in photos])
    with torch.no_grad():
        features = efficientnet.net.forward_head(efficientnet.net.forward_features(efficientnet.normalize(batch)), pre_logits=True)
    expected = PCA(n_components=2).fit_transform(features.double().numpy())
    assert result.arrays["coordinates"].shape == (8, 2)
    np.testing.assert_allclose(result.arrays["coordinates"], expected, rtol=1e-4, atol=1e-3)
    assert sum(result.data["explained_variance_ratio"]) < 1
    assert result.images["map"].size == (800, 800)
    json.dumps(result.data)


def test_tsne_runs_on_a_small_collection_and_clamps_perplexity(vgg19, photos):
    params = {"projection": "tsne", "size": 64, "steps": 250, "canvas": 256}
    result = run_method("embedding", "vgg19", {"images": photos}, params, device="cpu")
    coords = result.arrays["coordinates"]
    assert coords.shape == (8, 2) and np.isfinite(coords).all() and np.ptp(coords, axis=0).min() > 0
    assert result.data["perplexity"] == 7 and "perplexity lowered from 30 to 7" in result.data["notes"][0]
    again = run_method("embedding", "vgg19", {"images": photos}, params, device="cpu")
    np.testing.assert_allclose(again.arrays["coordinates"], coords)
    json.dumps(result.data)
    assert hook_count(vgg19) == 0


@pytest.mark.parametrize("projection", ["tsne", "pca"])
def test_identical_images_lie_at_one_point_instead_of_crashing(vgg19, chelsea, projection):
    """Three copies of one photo have no spread: scikit-learn's t-SNE would crash the process on them."""
    params = {"projection": projection, "size": 64, "steps": 250, "canvas": 256}
    result = run_method("embedding", "vgg19", {"images": [chelsea] * 3}, params, device="cpu")
    assert result.arrays["coordinates"].tolist() == [[0.0, 0.0]] * 3
    assert "same features" in result.data["notes"][0]
    json.dumps(result.data, allow_nan=False)


def test_collection_limits_are_enforced(photos):
    with pytest.raises(InputProblem, match="2..256"):
        run_method("nearest_neighbors", "vgg19", {"images": photos[:1]}, {"size": 64}, device="cpu")
    with pytest.raises(InvalidParams, match="size"):
        run_method("embedding", "vgg19", {"images": photos}, {"size": 8}, device="cpu")


class DictCache:
    """A FeatureCache in a dict that counts what it was asked."""

    def __init__(self):
        self.store, self.loads, self.saves = {}, 0, 0

    def load(self, key):
        self.loads += 1
        return self.store.get(key)

    def save(self, key, features):
        self.saves += 1
        self.store[key] = features.copy()


def test_second_query_reads_the_cache_and_runs_no_forward_pass(efficientnet, photos):
    cache, steps = DictCache(), []
    params = {"projection": "pca", "batch_size": 4}
    first = run_method("embedding", "efficientnet_lite0", {"images": photos}, params, lambda s, t, p=None, **_: steps.append(s), "cpu", cache)
    batches = len(steps)
    assert batches == 2 and cache.saves == 1
    forwards = []
    handle = efficientnet.net.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        second = run_method("nearest_neighbors", "efficientnet_lite0", {"images": photos}, {"top_k": 2}, lambda s, t, p=None, **_: steps.append(s), "cpu", cache)
    finally:
        handle.remove()
    assert forwards == [] and len(steps) == batches and cache.saves == 1  # no forward pass, no progress, nothing stored
    assert second.data["features"]["cached"] and second.data["features"]["key"] == first.data["features"]["key"]
    np.testing.assert_array_equal(first.arrays["features"], second.arrays["features"])
    changed = run_method("embedding", "efficientnet_lite0", {"images": photos[:-1]}, params, device="cpu", cache=cache)
    assert not changed.data["features"]["cached"] and cache.saves == 2


def test_tsne_of_identical_images_does_not_crash(efficientnet, chelsea):
    """PCA initialisation of identical rows is NaN, on which scikit-learn's Barnes-Hut t-SNE segfaults."""
    result = run_method("embedding", "efficientnet_lite0", {"images": [chelsea] * 3}, {"size": 64, "steps": 250}, device="cpu")
    assert np.isfinite(result.arrays["coordinates"]).all() and result.arrays["coordinates"].shape == (3, 2)
    assert any("same features" in note for note in result.data["notes"])
