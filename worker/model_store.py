"""Registered models shared by every API and worker process: files in object storage, records in Redis.

The file is stored under its content hash (``models/files/<sha256>``), so
the same file registered twice is one copy. A ``torch.export`` program is
translated to ONNX once, at registration, and that translation is stored
beside it (``models/converted/<sha256>.onnx``): workers load the ONNX and
never the program.

Records (name, owner, format, hashes and the validated metadata) are one
Redis hash, ``convlens:models``, name -> JSON. Redis rather than a JSON
object in storage because the name must be claimed atomically across API
processes: ``HSETNX`` lets exactly one of two racing registrations win, which
neither the filesystem backend nor S3 offers for both backends alike; and it
is already the service's shared state (job records), run append-only in
production. Every process finds registered models through the zoo's model
source (:func:`model_source`), which reads the record on each lookup of a
registered name, so a model removed or replaced through one API process is
gone or new in all of them.
"""

import hashlib
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable

from engine.errors import UnknownModel
from engine.models import ModelSpec
from engine.models.formats import ModelFormat, load_network
from engine.models.registered import ModelMetadata, spec_from_metadata
from engine.models.zoo import CACHE, MODELS, set_model_source, unregister_model
from worker.jobs import connect
from worker.broker import broker_errors
from worker.model_vetting import ModelVetter
from worker.settings import Settings
from worker.storage import ObjectNotFound, Storage, make_storage

RECORDS = "convlens:models"
log = logging.getLogger(__name__)

_DELETE_OWNED = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return false end
if cjson.decode(raw)['owner'] ~= ARGV[2] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return raw
"""


class ModelNameTaken(Exception):
    """The name belongs to a built-in or an already registered model."""


@dataclass(frozen=True)
class ModelRecord:
    name: str
    owner: str
    format: ModelFormat
    content_hash: str
    file_key: str  # the file as sent
    load_key: str  # what workers load: the file, or its ONNX translation
    load_format: ModelFormat
    bytes: int
    parameters: int
    registered_at: float
    metadata: dict  # ModelMetadata with every default layer resolved
    sizes: dict | None = None  # engine.models.vetted.Sizes.as_dict(); None in records made before vetting
    capabilities: dict | None = None  # capability -> None, or why it is not offered
    catalogue: list | None = None  # the layer catalogue at the native size

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "ModelRecord":
        return cls(**json.loads(raw))

    def as_dict(self) -> dict:
        return {"format": self.format, "sha256": self.content_hash, "bytes": self.bytes,
                "parameters": self.parameters, "registered_at": self.registered_at, "owner": self.owner}


class ModelStore:
    def __init__(self, redis, storage: Storage, settings: Settings):
        self.redis = redis
        self.storage = storage
        self.vetter = ModelVetter(settings)
        self._delete = redis.register_script(_DELETE_OWNED)

    # -- registration ------------------------------------------------------------------------

    def register(self, tenant: str, metadata: str | bytes | dict, data: bytes) -> ModelRecord:
        """Vet (in a child process), store and record a model (ModelRejected, ModelNameTaken); every stored model stays intact."""
        meta = ModelMetadata.parse(metadata)
        self._check_name_free(meta.name)
        vetted = self.vetter.vet(data, metadata)
        fmt, translated = vetted.format, vetted.onnx
        digest = hashlib.sha256(data).hexdigest()
        file_key = f"models/files/{digest}"
        load_key = f"models/converted/{digest}.onnx" if fmt == "torch_export" else file_key
        vetted_fields = vetted.as_record()
        record = ModelRecord(
            name=meta.name, owner=tenant, format=fmt, content_hash=digest, file_key=file_key, load_key=load_key,
            load_format="onnx", bytes=len(data), parameters=vetted.parameters, registered_at=round(time.time(), 3),
            metadata=vetted.metadata, sizes=vetted_fields["sizes"], capabilities=vetted_fields["capabilities"],
            catalogue=vetted_fields["catalogue"],
        )
        self._put_once(file_key, data)
        if load_key != file_key:
            self._put_once(load_key, translated)
        with broker_errors():
            claimed = self.redis.hsetnx(RECORDS, meta.name, record.to_json())
        if not claimed:
            raise ModelNameTaken(f"a model named {meta.name!r} is already registered")
        self._put_once(file_key, data)  # a concurrent delete of a twin may have removed the shared file
        if load_key != file_key:
            self._put_once(load_key, translated)
        return record

    def _check_name_free(self, name: str) -> None:
        if name in MODELS and MODELS.get(name).builtin:
            raise ModelNameTaken(f"{name!r} is a built-in model")
        with broker_errors():
            if self.redis.hexists(RECORDS, name):
                raise ModelNameTaken(f"a model named {name!r} is already registered")

    def _put_once(self, key: str, data: bytes) -> None:
        if not self.storage.exists(key):
            self.storage.put(key, data, "application/octet-stream")

    # -- reading -----------------------------------------------------------------------------

    def record(self, name: str) -> ModelRecord | None:
        with broker_errors():
            raw = self.redis.hget(RECORDS, name)
        return ModelRecord.from_json(raw) if raw is not None else None

    def get(self, tenant: str, name: str) -> ModelRecord | None:
        """The tenant's record of ``name``; None for another tenant's model (not found, not forbidden)."""
        found = self.record(name)
        return found if found is not None and found.owner == tenant else None

    def owned(self, tenant: str) -> list[ModelRecord]:
        with broker_errors():
            raws = self.redis.hvals(RECORDS)
        records = [ModelRecord.from_json(raw) for raw in raws]
        return sorted((r for r in records if r.owner == tenant), key=lambda r: r.name)

    def delete(self, tenant: str, name: str) -> ModelRecord:
        """Remove the tenant's model ``name`` (UnknownModel if it has none), and its files once unused."""
        with broker_errors():
            raw = self._delete(keys=[RECORDS], args=[name, tenant])
        if raw is None:
            raise UnknownModel(f"no registered model {name!r}")
        record = ModelRecord.from_json(raw)
        try:
            unregister_model(name)
        except UnknownModel:
            pass  # never loaded in this process
        if not any(other.content_hash == record.content_hash for other in self._all()):
            for key in {record.file_key, record.load_key}:
                self.storage.delete(key)
        return record

    def _all(self) -> list[ModelRecord]:
        with broker_errors():
            return [ModelRecord.from_json(raw) for raw in self.redis.hvals(RECORDS)]

    # -- the zoo's model source --------------------------------------------------------------

    def spec_for(self, name: str) -> ModelSpec | None:
        """The current spec of registered model ``name``, whose build reads the stored file."""
        found = self.record(name)
        if found is None:
            return None
        return spec_from_metadata(ModelMetadata.model_validate(found.metadata), found.format, self._builder(found), found.owner, found.content_hash)

    def _builder(self, found: ModelRecord) -> Callable:
        def build():
            try:
                data = self.storage.get(found.load_key)
            except ObjectNotFound:
                raise UnknownModel(f"the file of model {found.name!r} is missing from storage") from None
            return load_network(data, found.load_format)

        return build


def model_store_getter(settings: Settings) -> Callable[[], ModelStore]:
    """A getter of this process's one ModelStore, made on first use (so after a worker pool forks)."""
    lock, made = threading.Lock(), []

    def get() -> ModelStore:
        with lock:
            if not made:
                made.append(ModelStore(connect(settings), make_storage(settings), settings))
            return made[0]

    return get


def install_model_source(settings: Settings) -> Callable[[], ModelStore]:
    """Point the zoo at the shared model store and size the model cache; returns the store getter.

    A lookup that cannot reach Redis keeps what this process already knows
    (a registered model it loaded keeps serving) and treats other names as unknown.
    """
    store = model_store_getter(settings)
    CACHE.resize(settings.model_cache_bytes)

    def source(name: str) -> ModelSpec | None:
        try:
            return store().spec_for(name)
        except Exception as exc:  # BrokerUnavailable or storage trouble: serve what is known
            log.warning("model registry unreachable looking up %r: %s", name, exc)
            return MODELS.get(name) if name in MODELS else None

    set_model_source(source)
    return store

