"""Shared fixtures: real photos (scikit-image, scikit-learn) and real pretrained models."""

import os
from pathlib import Path

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


# -- two test processes ---------------------------------------------------------------------------
# scripts/test runs the suite with pytest-xdist (-n 2, a file's tests in one process): the end-to-end
# tests mostly wait on their worker processes, so another file's tests use the core meanwhile. Each
# process takes its share of the cores for torch; two processes of two threads each on 2 cores
# would fight over them.


def pytest_configure(config):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


# -- the fast tier ------------------------------------------------------------------------------
# `scripts/test --fast` (pytest --fast): the developer's loop. It leaves out the end-to-end tests
# (tests/e2e, real processes), the tests marked slow, and the tests named in tests/heavy_tests.txt
# (measured over 0.6 s each on 2 cores; regenerate the list from a full run's --durations).
# A name there that no longer exists in a collected file fails the run, so the list cannot rot.

HEAVY_TESTS = Path(__file__).with_name("heavy_tests.txt")


def pytest_addoption(parser):
    parser.addoption("--fast", action="store_true", help="the fast tier: no e2e, slow or heavy tests (tests/heavy_tests.txt)")


def heavy_test_ids() -> set[str]:
    lines = (line.split("#")[0].strip() for line in HEAVY_TESTS.read_text().splitlines())
    return {line for line in lines if line}


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--fast"):
        return
    heavy = heavy_test_ids()
    collected = {item.nodeid for item in items}
    files = {nodeid.split("::")[0] for nodeid in collected}
    gone = {nodeid for nodeid in heavy if not (config.rootpath / nodeid.split("::")[0]).exists()}
    stale = sorted(gone | {nodeid for nodeid in heavy if nodeid.split("::")[0] in files and nodeid not in collected})
    if stale:
        raise pytest.UsageError(f"tests/heavy_tests.txt names tests that no longer exist: {', '.join(stale)}")
    kept, dropped = [], []
    for item in items:
        leave_out = item.nodeid.startswith("tests/e2e/") or item.get_closest_marker("slow") or item.nodeid in heavy
        (dropped if leave_out else kept).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept
