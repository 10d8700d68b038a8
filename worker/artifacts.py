"""Turn a Result into stored artifacts: PNG images, .npy arrays and the JSON data.

Encoding is :mod:`engine.encoding`'s, as for inline answers: stored artifacts
use its smaller PNGs (``fast=False``, written once, downloaded many times);
previews, overwritten every few steps while a job runs, use its fast ones.
"""

import json

from PIL import Image

from engine.encoding import encode_result, png_bytes
from engine.result import Result
from worker.storage import Storage, check_key

SUFFIX = {"image": ".png", "array": ".npy"}


def artifact_key(job_id: str, name: str) -> str:
    return check_key(f"jobs/{job_id}/{name}")


def store_result(storage: Storage, job_id: str, result: Result) -> list[dict]:
    """Store every image, array and the data of ``result``; returns the artifact descriptions."""
    main = result.main or next(iter(result.images), None)
    files = [
        (item.name + SUFFIX[item.kind], item.kind, item.media_type, item.content, item.kind == "image" and item.name == main)
        for item in encode_result(result, fast=False)
    ]
    files.append(("result.json", "data", "application/json", json.dumps(result.data, indent=1).encode(), False))
    artifacts = []
    for name, kind, media_type, data, is_main in files:
        key = artifact_key(job_id, name)
        storage.put(key, data, media_type)
        artifacts.append({"name": name, "kind": kind, "media_type": media_type, "key": key, "bytes": len(data), "main": is_main})
    return artifacts


def discard_result(storage: Storage, artifacts: list[dict]) -> None:
    """Delete stored artifacts that no job record points to (the job was cancelled meanwhile)."""
    for artifact in artifacts:
        storage.delete(artifact["key"])


def store_preview(storage: Storage, job_id: str, image: Image.Image) -> str:
    """Overwrite the job's latest preview; returns its key."""
    key = check_key(f"previews/{job_id}.png")
    storage.put(key, png_bytes(image, fast=True), "image/png")
    return key
