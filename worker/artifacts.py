"""Turn a Result into stored artifacts: PNG images, .npy arrays and the JSON data."""

import io
import json

import numpy as np
from PIL import Image

from engine.result import Result
from worker.storage import Storage, check_key


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def artifact_key(job_id: str, name: str) -> str:
    return check_key(f"jobs/{job_id}/{name}")


def store_result(storage: Storage, job_id: str, result: Result) -> list[dict]:
    """Store every image, array and the data of ``result``; returns the artifact descriptions."""
    main = result.main or next(iter(result.images), None)
    files = [(f"{name}.png", "image", "image/png", png_bytes(image), name == main) for name, image in result.images.items()]
    files += [(f"{name}.npy", "array", "application/x-npy", npy_bytes(array), False) for name, array in result.arrays.items()]
    files.append(("result.json", "data", "application/json", json.dumps(result.data, indent=1).encode(), False))
    artifacts = []
    for name, kind, media_type, data, is_main in files:
        key = artifact_key(job_id, name)
        storage.put(key, data, media_type)
        artifacts.append({"name": name, "kind": kind, "media_type": media_type, "key": key, "bytes": len(data), "main": is_main})
    return artifacts


def store_preview(storage: Storage, job_id: str, image: Image.Image) -> str:
    """Overwrite the job's latest preview; returns its key."""
    key = check_key(f"previews/{job_id}.png")
    storage.put(key, png_bytes(image), "image/png")
    return key
