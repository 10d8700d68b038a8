"""The feature cache of the dataset methods, in object storage (``derived/features/<key>.npy``).

Keys are content hashes made by :func:`engine.inspect.collection.features_key`,
so entries never go stale: a changed collection asks for another key.
"""

import io

import numpy as np

from worker.storage import ObjectNotFound, Storage


class StoredFeatures:
    def __init__(self, storage: Storage):
        self.storage = storage

    def _key(self, key: str) -> str:
        return f"derived/features/{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        try:
            data = self.storage.get(self._key(key))
        except ObjectNotFound:
            return None
        return np.load(io.BytesIO(data), allow_pickle=False)

    def save(self, key: str, features: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
        self.storage.put(self._key(key), buffer.getvalue(), "application/x-npy")
