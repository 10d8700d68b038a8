"""Embedding: a collection's penultimate-layer features laid out in 2-D, by PCA
or by t-SNE (van der Maaten & Hinton 2008, https://jmlr.org/papers/v9/vandermaaten08a.html),
with each image's thumbnail drawn at its coordinates (the lecture's t-SNE map
of ImageNet, after Karpathy's CNN-codes visualisation)."""

from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

from engine import params as p
from engine.capabilities import LAYERS
from engine.inspect.collection import MAX_IMAGES, FeatureParams, feature_vectors, fit_all
from engine.imaging import tile_grid
from engine.inspect.display import thumbnail
from engine.models import ConvLensModel
from engine.picture_names import picture_ref
from engine.params import Seeded
from engine.cost import Cost, forward_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result


class EmbeddingParams(FeatureParams, Seeded):
    projection: Literal["pca", "tsne"] = Field("tsne", description="linear projection on the two main axes, or t-SNE")
    perplexity: float = Field(30.0, ge=1.0, le=100.0, description="t-SNE: effective number of neighbors (lowered to n - 1 for small collections)", json_schema_extra=p.RARE)
    steps: int = p.steps(1000, 250, 5000, "t-SNE: optimization steps")
    canvas: int = Field(800, ge=200, le=4096, description="side of the drawn map", json_schema_extra=p.RARE)
    tile_size: int = p.tile_size(48, 8, what="each thumbnail on the map")


def project(vectors: np.ndarray, params: EmbeddingParams) -> tuple[np.ndarray, dict]:
    """(N, 2) coordinates and what the projection reports about itself."""
    if not np.ptp(vectors, axis=0).any():  # one point: PCA divides by zero variance, scikit-learn's t-SNE crashes
        return np.zeros((len(vectors), 2)), {"notes": ["every image has the same features: all are drawn at one point"]}
    if params.projection == "pca":
        pca = PCA(n_components=2)
        return pca.fit_transform(vectors), {"explained_variance_ratio": pca.explained_variance_ratio_.tolist(), "notes": []}
    perplexity = min(params.perplexity, len(vectors) - 1.0)
    info = {"perplexity": perplexity, "notes": []}
    if perplexity < params.perplexity:
        info["notes"] = [f"perplexity lowered from {params.perplexity:g} to {perplexity:g}: t-SNE needs it below the number of images ({len(vectors)})"]
    init = "pca"
    if len(np.unique(vectors, axis=0)) < 2:  # PCA of identical rows is NaN, which crashes the Barnes-Hut code
        init = "random"
        info["notes"].append("every image has the same features: the t-SNE map is arbitrary")
    tsne = TSNE(n_components=2, perplexity=perplexity, max_iter=params.steps, init=init, random_state=params.seed)
    coords = tsne.fit_transform(vectors)
    info["kl_divergence"] = float(tsne.kl_divergence_)
    return coords, info


def thumbnail_map(images: list[Image.Image], coords: np.ndarray, canvas: int, side: int) -> Image.Image:
    """Thumbnails placed at their (rescaled) 2-D coordinates on a white square."""
    picture = Image.new("RGB", (canvas, canvas), "white")
    low, high = coords.min(0), coords.max(0)
    span = np.where(high > low, high - low, 1.0)
    room = canvas - side
    for image, (x, y) in zip(images, (coords - low) / span):
        picture.paste(thumbnail(image, side), (int(round(x * room)), int(round((1.0 - y) * room))))
    return picture


def embed_cost(model: ModelProfile, params: FeatureParams, images: int) -> Cost:
    """One forward pass per picture (a stored vector found again costs none), a batch alive at once."""
    return forward_cost(model, params.run_size(model.input_size), images, params.batch_size, "use fewer or smaller pictures")

@method(
    "embed_collection",
    summary="A collection's feature vectors at one layer (stored, and reused by embedding and nearest_neighbors)",
    requires=(LAYERS,),
    cost=embed_cost,
    category="inspect",
    params=FeatureParams,
    inputs=(InputSlot("images", "the collection to embed", many=True, min_count=1, max_count=MAX_IMAGES),),
    inline=False,
    uses_cache=True,
)
def embed_collection(model: ConvLensModel, inputs, params: FeatureParams, progress, cache=None) -> Result:
    images = fit_all(model, inputs["images"], params.shape(model), params.fit)
    vectors, found = feature_vectors(model, images, params, progress, cache)
    data = {"features": found.model_dump(), "shape": list(vectors.shape), "pictures": [picture_ref(inputs["images"], i) for i in range(len(images))]}
    sheet = tile_grid(np.stack([np.asarray(thumbnail(image, 32)) for image in images]), columns=min(8, len(images)))
    return Result(images={"contact_sheet": sheet}, arrays={"features": vectors}, data=data, main="contact_sheet")




@method(
    "embedding",
    summary="A collection's penultimate features in 2-D (PCA or t-SNE), drawn as a map of thumbnails",
    requires=(LAYERS,),
    cost=embed_cost,
    category="inspect",
    params=EmbeddingParams,
    inputs=(InputSlot("images", "the collection to lay out", many=True, min_count=3, max_count=MAX_IMAGES),),
    uses_cache=True,
)
def embedding(model: ConvLensModel, inputs, params: EmbeddingParams, progress, cache=None) -> Result:
    images = fit_all(model, inputs["images"], params.shape(model), params.fit)
    vectors, found = feature_vectors(model, images, params, progress, cache)
    coords, info = project(vectors.astype(np.float64), params)
    data = {"layer": found.layer, "pooling": params.pooling, "features": found.model_dump(), "projection": params.projection,
            "coordinates": coords.tolist(), "pictures": [picture_ref(inputs["images"], i) for i in range(len(images))], **info}  # fmt: skip
    return Result(
        images={"map": thumbnail_map(images, coords, params.canvas, params.tile_size)},
        arrays={"coordinates": coords, "features": vectors},
        data=data,
        main="map",
    )
