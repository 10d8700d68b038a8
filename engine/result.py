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
    ``tensors`` is a trained network's state dict that the service stores as a
    resource (a style model), never an artifact.
    """

    images: dict[str, Image.Image] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    main: str | None = None
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    def main_image(self) -> Image.Image:
        if self.main is not None:
            return self.images[self.main]
        return next(iter(self.images.values()))
