"""The one result shape every method returns."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image


@dataclass
class Result:
    """Named images, named raw arrays and JSON-able data.

    ``main`` names the picture returned when a client asks for ``image/png``;
    a name is one artifact (a picture or an array, never both), so each is fetchable alone;
    ``tensors`` is a trained network's state dict that the service stores as a
    resource (a style model), never an artifact.
    """

    images: dict[str, Image.Image] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    main: str | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shared = sorted(set(self.images) & set(self.arrays))
        if shared:
            raise ValueError(f"artifact names must be unique; both a picture and an array are named {shared}")

    def first_non_finite(self) -> str | None:
        """Where the first NaN or infinity in ``data`` or ``arrays`` is (``data.top[0].probability``), or None."""
        found = _non_finite_in(self.data, "data")
        if found is not None:
            return found
        for name, array in self.arrays.items():
            values = np.asarray(array)
            if values.dtype.kind in "fc" and not np.isfinite(values).all():
                return f"arrays.{name}"
        return None

    def main_image(self) -> Image.Image:
        if self.main is not None:
            return self.images[self.main]
        return next(iter(self.images.values()))


def _non_finite_in(value: Any, where: str) -> str | None:
    if isinstance(value, dict):
        items = ((f"{where}.{key}", item) for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{i}]", item) for i, item in enumerate(value))
    else:
        return where if isinstance(value, (float, np.floating)) and not np.isfinite(value) else None
    return next((found for path, item in items if (found := _non_finite_in(item, path)) is not None), None)
