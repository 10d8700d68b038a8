"""Starting pictures for multifaceted visualisation: the mean images of clusters of example photos.

Nguyen, Yosinski & Clune 2016 ("Multifaceted Feature Visualization",
https://arxiv.org/abs/1602.03616) cluster the training images of a class by
their features (k-means, one cluster per facet) and start each facet's
optimisation from the mean of the images nearest its cluster centre, so each
facet grows from a different kind of example (a bell pepper whole, cut, in a
pile) instead of from noise.
"""

import numpy as np
import torch
from PIL import Image
from sklearn.cluster import KMeans

from engine.errors import InvalidParams
from engine.imaging import fit_image, to_tensor
from engine.inspect.collection import FeatureParams, feature_vectors
from engine.models import ConvLensModel
from engine.progress import no_progress

NEAREST = 15  # images averaged per cluster, as in Nguyen et al.


def cluster_means(model: ConvLensModel, examples: list[Image.Image], facets: int, size: tuple[int, int], seed: int) -> torch.Tensor:
    """(facets, 3, H, W): per k-means cluster of the examples' penultimate features, the mean of
    the (up to 15) fitted examples nearest its centre; clusters in order of their first member."""
    if len(examples) < facets:
        raise InvalidParams(f"{facets} facets need at least {facets} example images to cluster, got {len(examples)}")
    fitted = [fit_image(image, size, "stretch") for image in examples]
    vectors = feature_vectors(model, fitted, FeatureParams(size=size[0]), no_progress)[0].astype(np.float64)
    kmeans = KMeans(n_clusters=facets, n_init=10, random_state=seed).fit(vectors)
    distances = kmeans.transform(vectors)
    order = sorted(range(facets), key=lambda c: int(np.flatnonzero(kmeans.labels_ == c)[0]))
    pictures = torch.cat([to_tensor(image, model.device) for image in fitted])
    starts = []
    for cluster in order:
        members = np.flatnonzero(kmeans.labels_ == cluster)
        nearest = members[np.argsort(distances[members, cluster])[:NEAREST]]
        starts.append(pictures[torch.as_tensor(nearest, device=pictures.device)].mean(0))
    return torch.stack(starts)
