"""Shared fixtures: real photos (scikit-image, scikit-learn) and real pretrained models."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="session")
def small_chelsea(chelsea) -> Image.Image:
    return chelsea.resize((96, 64))


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.coffee())


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="session")
def sample_images() -> list[Image.Image]:
    """scikit-learn's two sample photos (china, flower)."""
    from sklearn.datasets import load_sample_images

    return [Image.fromarray(np.asarray(img)) for img in load_sample_images().images]


@pytest.fixture(scope="session")
def efficientnet():
    from engine.models import load_model

    return load_model("efficientnet_lite0", "cpu")


@pytest.fixture(scope="session")
def vgg19():
    from engine.models import load_model

    return load_model("vgg19", "cpu")
