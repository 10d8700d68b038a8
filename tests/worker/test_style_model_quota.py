"""A training job whose style model would pass its key's stored-bytes limit fails with storage_quota_exceeded,
storing nothing and counting nothing; within the limit its model is stored and counted (real Redis)."""

from types import SimpleNamespace

import pytest

from engine.result import Result
from engine.synthesis.fast_style import StyleModelConfig, build
from tests.worker.test_jobs_store import make_job
from worker import tasks
from worker.jobs import JobStore
from worker.settings import Settings
from worker.storage import FilesystemStorage
from worker.model_store import ModelStore
from worker.usage import StoredBytes

CONFIG = StyleModelConfig(width=4, blocks=1, styles=1, style_names=["only"])  # random weights: only their bytes count here


@pytest.mark.parametrize("limit, state", [(1_000, "failed"), (10**9, "succeeded"), (0, "succeeded")])
def test_a_trained_style_model_is_kept_only_within_the_limit(redis_client, tmp_path, monkeypatch, limit, state):
    store, storage = JobStore(redis_client, ttl_seconds=600), FilesystemStorage(tmp_path)
    job, _ = store.create(make_job(method="filters", model="vgg19", params={}, inputs={}, tenant="gus", max_stored_bytes=limit))
    store.start(job.id, 3, "w:1")
    trained = Result(data={"style_model": CONFIG.model_dump(), "model": "vgg19"}, tensors=build(CONFIG).state_dict())
    monkeypatch.setattr(tasks, "run_call", lambda *args: trained)
    task = SimpleNamespace(jobs=store, settings=Settings(), storage=storage, app=None, models=ModelStore(redis_client, storage, Settings()))

    assert tasks._run(task, store.get(job.id), 1) == state
    ended, used = store.get(job.id), StoredBytes(redis_client).used("gus")
    stored = sorted(key for key, _ in storage.list("style-models/"))
    if state == "failed":
        assert ended.error["code"] == "storage_quota_exceeded" and "1000 bytes" in ended.error["message"]
        assert stored == [] and used == 0
    else:
        assert ended.result["style_model"]["id"] == job.id and len(stored) == 3  # weights, record, the tenant's index
        assert used == (0 if limit == 0 else sum(len(storage.get(key)) for key in stored if not key.endswith("index.json")))
