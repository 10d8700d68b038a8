"""The built-in ``samples`` collection: real photos that ship with installed packages.

scikit-image's data photos and scikit-learn's two sample images, stored as
the very files those packages ship (named by them), once: a later start finds them.
"""

from pathlib import Path

from worker.collections import BUILTIN, SAMPLES, Collection, CollectionLimits, CollectionStore, UnknownCollection

SKIMAGE_PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "retina.jpg",
    "motorcycle_left.png", "camera.png", "coins.png", "moon.png", "brick.png", "grass.png", "gravel.png",
)  # fmt: skip


def sample_files() -> list[Path]:
    import skimage.data
    import sklearn.datasets

    sklearn_dir = Path(sklearn.datasets.__file__).parent / "images"
    return [Path(skimage.data.data_dir) / name for name in SKIMAGE_PHOTOS] + [sklearn_dir / "china.jpg", sklearn_dir / "flower.jpg"]


def ensure_samples(store: CollectionStore) -> Collection:
    """The ``samples`` collection, made on first use.

    The tenants' limits, the picture size limit included, do not apply to these
    known files: a service configured for small pictures still starts.
    """
    try:
        return store.get(BUILTIN, SAMPLES)
    except UnknownCollection:
        files = [(path.stem, path.read_bytes()) for path in sample_files()]
        fitting = CollectionLimits(len(files), sum(len(data) for _, data in files), 10**10, 10**10)
        return CollectionStore(store.storage, fitting).create(BUILTIN, "Sample photos (scikit-image, scikit-learn)", files, collection_id=SAMPLES)
