"""Style models: trained fast-style networks stored as tenant-owned resources.

A model is ``<id>.json`` (its :class:`engine.synthesis.fast_style.StyleModelConfig`,
name and origin) beside ``<id>.safetensors`` (the weights). Weights are read
with safetensors, which holds tensors only: nothing is ever unpickled. Loaded
networks are kept in a small per-process cache, so stylising is one forward pass.
Both files count against the tenant's stored-bytes quota (:mod:`worker.usage`)
from their saving to their deletion.
"""

import json
import threading
import time
from collections import OrderedDict

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from engine.synthesis.fast_style import StyleModelConfig, Transformer, build
from worker.storage import ObjectNotFound, Storage
from worker.tenancy import TenantIndex
from worker.usage import StoredBytes


class UnknownStyleModel(Exception):
    def __init__(self, model_id: str):
        super().__init__(f"unknown style model {model_id!r}")
        self.model_id = model_id


def config_of(record: dict) -> StyleModelConfig:
    """The network config in a stored record (fields a record predates take their defaults: its layout)."""
    return StyleModelConfig.model_validate({k: record[k] for k in StyleModelConfig.model_fields if k in record})


def _valid_id(model_id: str) -> bool:
    return 0 < len(model_id) <= 64 and all(c in "0123456789abcdef" for c in model_id)


class StyleModelStore:
    def __init__(self, storage: Storage, usage: StoredBytes | None = None, cached: int = 8):
        """``usage``: the tenants' stored-bytes counters (None: nothing is counted)."""
        self.storage, self.usage = storage, usage
        self.index = TenantIndex(storage, "style-models")
        self._nets: OrderedDict[tuple[str, str], tuple[dict, Transformer]] = OrderedDict()
        self._cached, self._lock = cached, threading.Lock()

    def _files(self, owner: str, model_id: str) -> list[str]:
        return [self.index.key(owner, model_id, "safetensors"), self.index.key(owner, model_id, "json")]

    def save(self, owner: str, model_id: str, config: StyleModelConfig, tensors: dict[str, torch.Tensor], origin: dict,
             max_stored_bytes: int = 0) -> dict:
        """Store a network; StorageQuotaExceeded when its files would pass ``max_stored_bytes`` (> 0)."""
        build(config).load_state_dict(tensors, strict=True)  # refuses weights that do not fit the config
        record = {"id": model_id, **config.model_dump(), "created_at": time.time(), **origin}
        weights, record_key = self._files(owner, model_id)
        files = {weights: save_tensors(tensors), record_key: json.dumps(record).encode()}

        def store() -> None:
            self.storage.put(weights, files[weights], "application/octet-stream")
            self.storage.put(record_key, files[record_key], "application/json")
            self.index.add(owner, model_id)

        if self.usage is None:
            store()
        else:
            self.usage.store_within(self.storage, owner, max_stored_bytes, {key: len(data) for key, data in files.items()}, store)
        return record

    def get(self, tenant: str, model_id: str) -> dict:
        if not _valid_id(model_id):
            raise UnknownStyleModel(model_id)
        try:
            return json.loads(self.storage.get(self.index.key(tenant, model_id, "json")))
        except ObjectNotFound:
            raise UnknownStyleModel(model_id) from None

    def network(self, tenant: str, model_id: str) -> tuple[dict, Transformer]:
        """The record and its network, loaded once per process."""
        key = (tenant, model_id)
        with self._lock:
            if key in self._nets:
                self._nets.move_to_end(key)
                return self._nets[key]
        record = self.get(tenant, model_id)
        try:
            tensors = load_tensors(self.storage.get(self.index.key(tenant, model_id, "safetensors")))
        except ObjectNotFound:
            raise UnknownStyleModel(model_id) from None
        net = build(config_of(record))
        net.load_state_dict(tensors, strict=True)
        for p in net.parameters():
            p.requires_grad_(False)
        with self._lock:
            self._nets[key] = (record, net)
            while len(self._nets) > self._cached:
                self._nets.popitem(last=False)
        return record, net

    def delete(self, tenant: str, model_id: str) -> None:
        self.get(tenant, model_id)
        with self._lock:
            self._nets.pop((tenant, model_id), None)
        files = self._files(tenant, model_id)
        for key in files:
            self.storage.delete(key)
        if self.usage is not None:
            self.usage.release(tenant, files)
        self.index.remove(tenant, model_id)

    def list(self, tenant: str) -> "list[dict]":  # last in the class: it shadows the builtin name
        found = []
        for model_id in self.index.ids(tenant):
            try:
                found.append(self.get(tenant, model_id))
            except UnknownStyleModel:
                continue
        return found


def save_trained_style_model(storage: Storage, usage: StoredBytes, owner: str, job_id: str, method: str, result,
                             max_stored_bytes: int) -> None:
    """A finished training job's network becomes style model ``job_id`` (its data gains the model's id).

    StorageQuotaExceeded when its files would pass the submitting key's ``max_stored_bytes``.
    """
    if not result.tensors or "style_model" not in result.data:
        return
    config = StyleModelConfig.model_validate(result.data["style_model"])
    origin = {"job": job_id, "method": method, "model": result.data.get("model")}
    StyleModelStore(storage, usage).save(owner, job_id, config, result.tensors, origin, max_stored_bytes)
    result.data["style_model"]["id"] = job_id
    result.data["style_model"]["url"] = f"/v1/style_models/{job_id}"
