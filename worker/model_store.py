"""Registered models shared by every API and worker process: files in object storage, records in Redis.

A registered model belongs to the tenant that registered it. Its name is
unique within that tenant and means nothing to another: every lookup takes
the asking tenant and finds its own model of that name, else one the
operator published (:meth:`ModelStore.publish`), else nothing, exactly as
for an unknown name. Built-in names are reserved.

The file is stored under its content hash (``models/files/<sha256>``), so
the same file registered twice is one copy, counted by the records that use
it and deleted with the last. A ``torch.export`` program is translated to
ONNX once, at registration, and that translation is stored beside it
(``models/converted/<sha256>.onnx``): workers load the ONNX and never the program.

Redis: ``convlens:models:tenant:<tenant>`` (name -> record JSON, one hash per
tenant), ``convlens:models:published`` (name -> owning tenant) and
``convlens:models:files`` (content hash -> records using it). Redis rather
than storage because a name must be claimed atomically across API processes
(``HSETNX``), which neither storage backend offers for both alike; and it is
already the service's shared state, persisted append-only.
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
from engine.models.formats import FILE_FORMATS, ModelFormat, onnx_network
from engine.models.registered import ModelMetadata, StoredMetadata, spec_from_metadata
from engine.models.vetted import Vetted
from engine.models.zoo import MODELS, forget_model
from worker.broker import broker_errors
from worker.jobs import connect
from worker.model_vetting import ModelVetter
from worker.settings import Settings
from worker.storage import ObjectNotFound, Storage, make_storage

PREFIX = "convlens:models"
PUBLISHED = f"{PREFIX}:published"
FILES = f"{PREFIX}:files"
FILE_LOCK_SECONDS = 300  # storing the largest model file (to S3) fits in it
log = logging.getLogger(__name__)

# KEYS: the tenant's hash, the published hash, the file counts; ARGV: name, record, content hash
_CLAIM = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
return 1
"""

# KEYS as _CLAIM; ARGV: name, owner, the record expected. Returns the record and how many records still use its
# file, or nothing where the name holds no record or another one.
_REMOVE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw ~= ARGV[3] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[1]) end
local digest = cjson.decode(raw)['content_hash']
local left = redis.call('HINCRBY', KEYS[3], digest, -1)
if left <= 0 then redis.call('HDEL', KEYS[3], digest) end
return {raw, left}
"""

# KEYS: the owner's hash, the published hash; ARGV: name, owner
_PUBLISH = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return -1 end
local holder = redis.call('HGET', KEYS[2], ARGV[1])
if holder and holder ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""


class ModelNameTaken(Exception):
    """The name belongs to a built-in, to another model of the same tenant, or to a published model."""


@dataclass(frozen=True)
class ModelRecord:
    name: str
    owner: str
    format: ModelFormat
    content_hash: str
    file_key: str  # the file as sent
    load_key: str  # what workers load: the file, or its ONNX translation
    bytes: int
    parameters: int
    registered_at: float
    metadata: dict  # ModelMetadata with every default layer resolved
    sizes: dict  # what vetting measured (engine.models.vetted.Vetted.as_record): the sizes it runs at,
    capabilities: dict  # capability -> None, or why the model lacks it,
    catalogue: list  # and the layer catalogue at the native size

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> "ModelRecord":
        return cls(**json.loads(raw))

    def as_dict(self) -> dict:
        return {"format": self.format, "sha256": self.content_hash, "bytes": self.bytes,
                "parameters": self.parameters, "registered_at": self.registered_at, "owner": self.owner}


def tenant_models(tenant: str) -> str:
    return f"{PREFIX}:tenant:{tenant}"


class ModelStore:
    def __init__(self, redis, storage: Storage, settings: Settings):
        self.redis = redis
        self.storage = storage
        self.vetter = ModelVetter(settings)
        self._claim = redis.register_script(_CLAIM)
        self._remove = redis.register_script(_REMOVE)
        self._publish = redis.register_script(_PUBLISH)

    # -- registration ------------------------------------------------------------------------

    def register(self, tenant: str, metadata: str | bytes | dict, data: bytes) -> ModelRecord:
        """Vet (in a child process), store and record a model (ModelRejected, ModelNameTaken); every stored model stays intact."""
        meta = ModelMetadata.parse(metadata)
        self._check_name_free(tenant, meta.name)
        vetted = self.vetter.vet(data, metadata)
        fmt, translated = vetted.format, vetted.onnx
        digest = hashlib.sha256(data).hexdigest()
        file_key = f"models/files/{digest}"
        load_key = f"models/converted/{digest}.onnx" if FILE_FORMATS[fmt].translated else file_key
        measured = vetted.as_record()
        record = ModelRecord(
            name=meta.name, owner=tenant, format=fmt, content_hash=digest, file_key=file_key, load_key=load_key,
            bytes=len(data), parameters=vetted.parameters, registered_at=round(time.time(), 3),
            metadata=vetted.metadata, sizes=measured["sizes"], capabilities=measured["capabilities"], catalogue=measured["catalogue"],
        )
        with broker_errors(), self._file_lock(digest):  # no delete of the file's last model between storing it and counting this record
            self._put_once(file_key, data)
            if load_key != file_key:
                self._put_once(load_key, translated)
            claimed = self._claim(keys=[tenant_models(tenant), PUBLISHED, FILES], args=[meta.name, record.to_json(), digest])
        if not claimed:
            raise ModelNameTaken(f"you already have a model named {meta.name!r}")
        return record

    def _check_name_free(self, tenant: str, name: str) -> None:
        if name in MODELS:
            raise ModelNameTaken(f"{name!r} is a built-in model")
        with broker_errors():
            if self.redis.hexists(tenant_models(tenant), name):
                raise ModelNameTaken(f"you already have a model named {name!r}")

    def _put_once(self, key: str, data: bytes) -> None:
        if not self.storage.exists(key):
            self.storage.put(key, data, "application/octet-stream")

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, owner: str, name: str) -> None:
        """Let every tenant use ``owner``'s model ``name`` (the operator's act; UnknownModel, ModelNameTaken)."""
        with broker_errors():
            done = self._publish(keys=[tenant_models(owner), PUBLISHED], args=[name, owner])
        if done == -1:
            raise UnknownModel(f"you have no registered model {name!r}")
        if done == 0:
            raise ModelNameTaken(f"another tenant's model is already published as {name!r}")

    def unpublish(self, owner: str, name: str) -> bool:
        with broker_errors():
            if self.redis.hget(PUBLISHED, name) not in (owner.encode(), None):
                return False
            return bool(self.redis.hdel(PUBLISHED, name))

    # -- reading -----------------------------------------------------------------------------

    def get(self, tenant: str, name: str) -> ModelRecord | None:
        """The model ``name`` means to ``tenant``: its own, else a published one; None otherwise (not found, never forbidden)."""
        with broker_errors():
            raw = self.redis.hget(tenant_models(tenant), name)
            if raw is None:
                publisher = self.redis.hget(PUBLISHED, name)
                raw = self.redis.hget(tenant_models(publisher.decode()), name) if publisher is not None else None
        return ModelRecord.from_json(raw) if raw is not None else None

    def visible(self, tenant: str) -> list[ModelRecord]:
        """The tenant's own models and the published ones it has no own model of the same name for, by name."""
        with broker_errors():
            own = {r.name: r for r in map(ModelRecord.from_json, self.redis.hvals(tenant_models(tenant)))}
            published = {name.decode(): owner.decode() for name, owner in self.redis.hgetall(PUBLISHED).items()}
        found = dict(own)
        for name in sorted(set(published) - set(own)):
            record = self.get(tenant, name)
            if record is not None:
                found[name] = record
        return [found[name] for name in sorted(found)]

    def is_published(self, record: ModelRecord) -> bool:
        with broker_errors():
            return self.redis.hget(PUBLISHED, record.name) == record.owner.encode()

    def delete(self, tenant: str, name: str) -> ModelRecord:
        """Remove the tenant's model ``name`` (UnknownModel if it has none), and its files once no record uses them."""
        while True:
            with broker_errors():
                raw = self.redis.hget(tenant_models(tenant), name)
            if raw is None:
                raise UnknownModel(f"you have no registered model {name!r}")
            with broker_errors(), self._file_lock(ModelRecord.from_json(raw).content_hash):  # no registration of the file counts itself before it is gone
                found = self._remove(keys=[tenant_models(tenant), PUBLISHED, FILES], args=[name, tenant, raw])
                if found is None:
                    continue  # deleted (and maybe registered again for another file) meanwhile: look again
                raw, left = found
                record = ModelRecord.from_json(raw)
                if int(left) <= 0:
                    for key in {record.file_key, record.load_key}:
                        self.storage.delete(key)
            forget_model(self.spec_of(record))
            return record

    def _file_lock(self, digest: str):
        """The lock (in Redis, so across API processes) under which a stored file's users are counted and it is
        stored or removed: a file's last model deleted while a registration of the same file claims its name
        would otherwise remove the file the new record needs."""
        return self.redis.lock(f"{PREFIX}:file-lock:{digest}", timeout=FILE_LOCK_SECONDS, blocking_timeout=FILE_LOCK_SECONDS)

    # -- the model source of lookups (engine.models.zoo.find_spec) ---------------------------

    def spec_for(self, owner: str, name: str) -> ModelSpec | None:
        """The spec of the model ``name`` means to ``owner``, whose build reads the stored file."""
        found = self.get(owner, name)
        return self.spec_of(found) if found is not None else None

    def spec_of(self, found: ModelRecord) -> ModelSpec:
        meta = StoredMetadata.model_validate(found.metadata)  # validated when registered: no bounds added since
        measured = Vetted.from_record(asdict(found), b"")
        return spec_from_metadata(meta, found.format, self._builder(found), found.owner, found.content_hash, measured)

    def _builder(self, found: ModelRecord) -> Callable:
        def build():
            try:
                data = self.storage.get(found.load_key)
            except ObjectNotFound:
                raise UnknownModel(f"the file of model {found.name!r} is missing from storage") from None
            return onnx_network(data)

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
