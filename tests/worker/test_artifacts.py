"""A Result becomes stored PNG, .npy and JSON artifacts that read back exactly."""

import io
import json

import numpy as np
from PIL import Image

from engine.encoding import png_bytes
from engine.result import Result
from worker.artifacts import store_preview, store_result
from worker.storage import FilesystemStorage


def test_result_round_trips_through_storage(tmp_path, chelsea):
    storage = FilesystemStorage(tmp_path)
    saliency = np.random.default_rng(0).random((7, 5)).astype(np.float32)
    heat = Image.fromarray((saliency * 255).astype(np.uint8)).convert("RGB")
    result = Result(images={"input": chelsea, "heatmap": heat}, arrays={"saliency": saliency}, data={"top": [1, 2]}, main="heatmap")
    artifacts = {a["name"]: a for a in store_result(storage, "job1", result)}
    assert set(artifacts) == {"input.png", "heatmap.png", "saliency.npy", "result.json"}
    assert [name for name, a in artifacts.items() if a["main"]] == ["heatmap.png"]
    read = Image.open(io.BytesIO(storage.get(artifacts["input.png"]["key"])))
    assert read.format == "PNG" and np.array_equal(np.asarray(read), np.asarray(chelsea))
    assert storage.get(artifacts["input.png"]["key"]) == png_bytes(chelsea, fast=False)  # the small encoding
    array = np.load(io.BytesIO(storage.get(artifacts["saliency.npy"]["key"])), allow_pickle=False)
    assert array.dtype == np.float32 and np.array_equal(array, saliency)
    assert json.loads(storage.get(artifacts["result.json"]["key"])) == {"top": [1, 2]}
    assert artifacts["saliency.npy"]["media_type"] == "application/x-npy"


def test_preview_is_overwritten_and_reads_back_exactly(tmp_path, chelsea):
    storage = FilesystemStorage(tmp_path)
    store_preview(storage, "job1", Image.new("RGB", (4, 4), "red"))
    key = store_preview(storage, "job1", chelsea)
    assert key == "previews/job1.png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(storage.get(key)))), np.asarray(chelsea))
