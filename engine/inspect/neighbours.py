"""Nearest neighbours in feature space (Krizhevsky et al. 2012, Fig. 4): images
whose penultimate-layer features lie close are alike to the network, though
their pixels may differ a lot (a mirrored cat), while nearest neighbours in
raw pixel space mostly match colour and layout. Both can be returned side by side.
"""

from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field

from engine import params as p
from engine.capabilities import LAYERS
from engine.imaging import tile_grid, to_tensor
from engine.inspect.collection import MAX_IMAGES, FeatureParams, feature_vectors, fit_all
from engine.inspect.display import captioned, thumbnail
from engine.models import ConvLensModel
from engine.picture_names import caption, picture_ref
from engine.progress import no_progress
from engine.cost import Cost, forward_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result

Metric = Literal["l2", "cosine"]


class NeighborsParams(FeatureParams):
    top_k: int = p.top_k(5, 64, "neighbors per query, nearest first (at most the number of candidates)")
    metric: Metric = Field("l2", description="Euclidean distance, or cosine distance (1 - cosine similarity)")
    compare_pixels: bool = Field(False, description="also return the nearest neighbors in raw pixel space")
    tile_size: int = p.tile_size(64, 16, what="each drawn thumbnail")


def distances(queries: np.ndarray, candidates: np.ndarray, metric: Metric) -> np.ndarray:
    """(Q, N) distances between rows, computed in float64."""
    a, b = queries.astype(np.float64), candidates.astype(np.float64)
    if metric == "cosine":
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - a @ b.T, 0.0, 2.0)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0))


def nearest(vectors: np.ndarray, query: np.ndarray | None, k: int, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Indices and distances (Q, k), closest first, ties to the lower index.

    With a query vector it is the only query and every image a candidate;
    without, each image is a query and its candidates are the others.
    """
    if query is not None:
        table = distances(query[None], vectors, metric)
    else:
        table = distances(vectors, vectors, metric)
        np.fill_diagonal(table, np.inf)
    order = np.argsort(table, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(table, order, axis=1)


def neighbour_grid(queries: list[Image.Image], images: list[Image.Image], names: list[Image.Image], labels: list[str],
                   order: np.ndarray, dist: np.ndarray, side: int) -> Image.Image:
    """One row per query: the query, then its neighbours with their distances (captioned by ``names``' names)."""
    tiles = []
    for row, query in enumerate(queries):
        tiles.append(captioned(thumbnail(query, side), labels[row]))
        for index, value in zip(order[row], dist[row]):
            tiles.append(captioned(thumbnail(images[index], side), f"{caption(names, int(index))} {value:.3g}"))
    return tile_grid(np.stack(tiles), columns=order.shape[1] + 1)


def neighbours_cost(model: ModelProfile, params: NeighborsParams, images: int) -> Cost:
    """One forward pass per picture, the query's included, a batch alive at once."""
    return forward_cost(model, params.run_size(model.input_size), images, params.batch_size, "use fewer or smaller pictures")

@method(
    "nearest_neighbors",
    summary="Each image's (or a query's) nearest neighbours in the network's feature space, optionally against raw pixels",
    requires=(LAYERS,),
    cost=neighbours_cost,
    category="inspect",
    params=NeighborsParams,
    inputs=(
        InputSlot("images", "the collection to search", many=True, min_count=2, max_count=MAX_IMAGES),
        InputSlot("query", "an image to find neighbours for; default: every image of the collection", optional=True),
    ),
    uses_cache=True,
)
def nearest_neighbors(model: ConvLensModel, inputs, params: NeighborsParams, progress, cache=None) -> Result:
    size = params.shape(model)
    images = fit_all(model, inputs["images"], size, params.fit)
    extra = fit_all(model, [inputs["query"]], size, params.fit) if inputs.get("query") is not None else []
    has_query = bool(extra)
    vectors, found = feature_vectors(model, images, params, progress, cache)
    if has_query:
        vectors = np.concatenate([vectors, feature_vectors(model, extra, params, no_progress)[0]])
    candidates = len(images) if has_query else len(images) - 1
    k = min(params.top_k, candidates)
    queries = extra or images
    given = inputs["images"]
    labels = ["query"] if has_query else [f"{caption(given, i)} query" for i in range(len(images))]
    notes = [] if k == params.top_k else [f"top_k lowered from {params.top_k} to {k}: only {candidates} candidates per query"]

    def search(space: np.ndarray, name: str, result: Result) -> list[dict]:
        order, dist = nearest(space[: len(images)], space[len(images)] if has_query else None, k, params.metric)
        result.images[name] = neighbour_grid(queries, images, given, labels, order, dist, params.tile_size)
        result.arrays[f"{name}_positions"], result.arrays[f"{name}_distances"] = order, dist
        return [
            {
                "query": None if has_query else picture_ref(given, row),
                "neighbors": [{**picture_ref(given, int(i)), "distance": float(d)} for i, d in zip(order[row], dist[row])],
            }
            for row in range(len(order))
        ]

    result = Result(arrays={"features": vectors}, main="neighbors")
    data = {"layer": found.layer, "pooling": params.pooling, "features": found.model_dump(), "metric": params.metric, "k": k, "feature_dim": int(vectors.shape[1]), "notes": notes}
    data["neighbors"] = search(vectors, "neighbors", result)
    if params.compare_pixels:
        pixels = np.stack([to_tensor(image).flatten().numpy() for image in images + extra])
        data["pixel_neighbors"] = search(pixels, "pixel_neighbors", result)
    result.data = data
    return result
