"""Dependencies declared once as ``Annotated`` aliases.

Tenancy pattern, for every stored resource: a route takes ``TenantDep`` (the
tenant of the API key that sent the request) and passes it to every store
call that reads, lists, changes or deletes the resource, e.g.
``jobs.get_owned(job_id, tenant)``, ``image_bytes(storage, image_id, tenant)``.
The store keys its records by tenant (``images/<tenant>/<id>``) or checks the
record's owner, and answers another tenant's id exactly as an unknown one
(404), so existence never leaks. Routes that change things declare the scope
they need: ``dependencies=[Depends(require_scope("submit"))]`` (or ``"models"``,
``"admin"``; ``require_operator`` for what reaches every tenant).
"""

import threading
from typing import Annotated, Callable, TypeVar

import redis

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from api.event_streams import EventStreams
from api.inline_links import LinkedResults
from api.inline_pool import InlinePool
from api.inline_request import CollectionResolver
from api.picture_refs import ImageResolver
from api.job_service import JobService
from worker.broker import broker_errors
from worker.jobs import connect
from api.keys import ApiKey, KeyStore, same_token
from api.problems import Problem
from api.quotas import Quotas
from api.settings import Settings
from worker.collections import CollectionLimits, CollectionStore
from worker.feature_store import StoredFeatures
from worker.image_holds import ImageHolds
from engine.models.zoo import ModelSource
from worker.model_store import ModelStore
from worker.style_models import StyleModelStore
from worker.storage import Storage, make_storage
from worker.uploads import image_bytes

_SERVICE_LOCK = threading.RLock()
T = TypeVar("T")


def app_settings(request: Request) -> Settings:
    return request.app.state.settings


def inline_pool(request: Request) -> InlinePool:
    pool = getattr(request.app.state, "inline_pool", None)
    if pool is None:
        raise RuntimeError("the inline pool is created in the app's lifespan; start the app with it")
    return pool


def event_streams(request: Request) -> EventStreams:
    """The app's count of each tenant's open event streams."""
    settings = request.app.state.settings
    return _once(request.app, "event_streams", lambda: EventStreams(settings.max_event_streams, settings.quota_retry_after_seconds))


def _once(app, name: str, make: Callable[[], T]) -> T:
    """``app.state.<name>``, made by ``make`` on first use; none of them connects to anything until used."""
    with _SERVICE_LOCK:
        found = getattr(app.state, name, None)
        if found is None:
            found = make()
            setattr(app.state, name, found)
    return found


def app_redis(app) -> redis.Redis:
    """The app's Redis client (keys, quotas, jobs, registered models)."""
    return _once(app, "redis", lambda: connect(app.state.settings))


def app_storage(app) -> Storage:
    """The app's object storage client."""
    return _once(app, "storage", lambda: make_storage(app.state.settings))


def storage(request: Request) -> Storage:
    return app_storage(request.app)


def job_service(request: Request) -> JobService:
    """One JobService per app (Redis, storage, Celery producer), made on first use.

    A broker or storage that is down surfaces as 503 (api.problems) when a route uses it.
    """
    return app_job_service(request.app)


def app_job_service(app) -> JobService:
    return _once(app, "job_service", lambda: JobService(app.state.settings, app_storage(app), app_redis(app), app_model_source(app)))


def app_model_source(app) -> ModelSource:
    """How the app finds a tenant's registered model by name (engine.models.zoo.ModelSource), without connecting first."""
    return lambda owner, name: app.state.model_store().spec_for(owner, name)


def key_store(request: Request) -> KeyStore:
    return KeyStore(app_redis(request.app))


def quotas(request: Request) -> Quotas:
    return app_quotas(request.app)


def app_quotas(app) -> Quotas:
    return _once(app, "quotas", lambda: Quotas(app_redis(app)))


def image_holds(request: Request) -> ImageHolds:
    """What keeps the tenants' stored images (uploads, collections, jobs), to let go of the rest."""
    return _once(request.app, "image_holds", lambda: ImageHolds(app_storage(request.app), app_job_service(request.app).jobs))


_BEARER = HTTPBearer(auto_error=False, scheme_name="bearer", description="`Authorization: Bearer <API key>`")
_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKey", description="`X-API-Key: <API key>`")
UNLIMITED = {"rate_per_minute": 0, "max_active_jobs": 0, "max_stored_bytes": 0, "inline_per_key": 0}  # the operator's
OPEN_KEY = ApiKey(id="open", tenant="public", scope="admin", name="open access", operator=True, **UNLIMITED)
ADMIN_KEY = ApiKey(id="admin", tenant="admin", scope="admin", name="bootstrap admin key (CONVLENS_ADMIN_KEY)", operator=True,
                   **UNLIMITED)


def _unauthorized(code: str, detail: str, error: str | None = None) -> Problem:
    challenge = 'Bearer realm="convlens"' + (f', error="{error}"' if error else "")
    return Problem(401, code, detail, {"WWW-Authenticate": challenge})


def current_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    header: Annotated[str | None, Depends(_HEADER)],
) -> ApiKey:
    """The API key that sent the request (``Authorization: Bearer`` or ``X-API-Key``), counted against its rate.

    It is also ``request.state.api_key``: the inline pool counts calls per key.
    Open access (``CONVLENS_OPEN_ACCESS``) needs no key: one tenant, ``public``,
    every scope, no limits.
    """
    settings: Settings = request.app.state.settings
    if settings.open_access:
        request.state.api_key = OPEN_KEY
        return OPEN_KEY
    token = bearer.credentials if bearer is not None else header
    if not token:
        raise _unauthorized("missing_api_key", "send an API key: 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
    if settings.admin_key is not None and same_token(token, settings.admin_key.get_secret_value()):
        key = ADMIN_KEY
    else:
        with broker_errors():
            key = key_store(request).lookup(token)
        if key is None:
            raise _unauthorized("invalid_api_key", "the API key is unknown or was revoked", "invalid_token")
    request.state.api_key = key
    per_minute = settings.rate_per_minute if key.rate_per_minute is None else key.rate_per_minute
    with broker_errors():
        wait = quotas(request).hit(key.id, per_minute)
    if wait is not None:
        raise Problem(429, "rate_limited", f"this key may send {per_minute} requests per minute; retry in {wait} s",
                      {"Retry-After": str(wait)})
    return key


KeyDep = Annotated[ApiKey, Depends(current_key)]


def current_tenant(key: KeyDep) -> str:
    """The tenant a request acts for (its key's): every stored resource belongs to one, and lookups take it.

    Open access has a single tenant, ``public``.
    """
    return key.tenant


TenantDep = Annotated[str, Depends(current_tenant)]


def require_scope(scope: str) -> Callable[[ApiKey], ApiKey]:
    """A dependency refusing (403) keys below ``scope``: ``Depends(require_scope("admin"))``."""

    def check(key: KeyDep) -> ApiKey:
        if not key.grants(scope):
            raise Problem(403, "insufficient_scope", f"this key has scope {key.scope!r}; this needs {scope!r}")
        return key

    check.__name__ = f"require_{scope}"
    return check


def require_operator(key: KeyDep) -> ApiKey:
    """A dependency refusing (403) every key but the operator's (the bootstrap key, or open access)."""
    if not key.operator:
        raise Problem(403, "operator_only", "only the operator's key (CONVLENS_ADMIN_KEY) may do this")
    return key


def key_limit(key: ApiKey, settings: Settings, name: str) -> int:
    """The key's own limit ``name`` (one of ``api.keys.LIMITS``), or the settings' default."""
    own = getattr(key, name)
    return getattr(settings, name) if own is None else own


def collection_store(request: Request) -> CollectionStore:
    """The app's collection store, on the app's object storage, counting its pictures in the tenants' stored bytes."""
    return _once(request.app, "collection_store", lambda: make_collection_store(request.app))


def make_collection_store(app) -> CollectionStore:
    settings = app.state.settings
    limits = CollectionLimits(settings.collection_max_images, settings.collection_max_bytes, settings.collection_max_pixels, settings.max_image_pixels)
    return CollectionStore(app_storage(app), limits, app_quotas(app).stored)


def image_resolver(request: Request, tenant: TenantDep) -> ImageResolver:
    """How an ``image_id`` in an inline request becomes bytes: read from the image store.

    Called in the inline pool (storage I/O stays off the event loop) and only
    for ids, so pictures sent inline never touch storage. Unknown or malformed
    ids raise UnknownImage (404 ``unknown_image``).
    """

    def resolve(image_id: str) -> bytes:
        return image_bytes(app_storage(request.app), image_id, tenant)

    return resolve


def model_store(request: Request) -> ModelStore:
    """The app's registered-model store (made on first use; see ``create_app``)."""
    return request.app.state.model_store()


def model_source(request: Request) -> ModelSource:
    return app_model_source(request.app)


def collection_resolver(request: Request, tenant: TenantDep) -> CollectionResolver:
    """How a ``{"collection": id}`` inline input becomes image ids: the tenant's collection (404 if not theirs)."""

    def resolve(collection_id: str) -> list[tuple[str, str]]:
        return [(m.name, m.id) for m in collection_store(request).get(tenant, collection_id).images]

    return resolve


def style_model_store(request: Request) -> StyleModelStore:
    """One store per app: it keeps recently used networks loaded."""
    return _once(request.app, "style_model_store", lambda: StyleModelStore(app_storage(request.app), app_quotas(request.app).stored))


def feature_cache(request: Request) -> StoredFeatures:
    return StoredFeatures(app_storage(request.app))


SettingsDep = Annotated[Settings, Depends(app_settings)]
InlinePoolDep = Annotated[InlinePool, Depends(inline_pool)]
EventStreamsDep = Annotated[EventStreams, Depends(event_streams)]
JobsDep = Annotated[JobService, Depends(job_service)]
StorageDep = Annotated[Storage, Depends(storage)]
ImageResolverDep = Annotated[ImageResolver, Depends(image_resolver)]
QuotasDep = Annotated[Quotas, Depends(quotas)]
ImageHoldsDep = Annotated[ImageHolds, Depends(image_holds)]
KeyStoreDep = Annotated[KeyStore, Depends(key_store)]
ModelStoreDep = Annotated[ModelStore, Depends(model_store)]
ModelSourceDep = Annotated[ModelSource, Depends(model_source)]
RegistrationAllowed = Depends(require_scope("models"))  # registering and deleting the tenant's own models
CollectionsDep = Annotated[CollectionStore, Depends(collection_store)]
CollectionResolverDep = Annotated[CollectionResolver, Depends(collection_resolver)]
FeatureCacheDep = Annotated[StoredFeatures, Depends(feature_cache)]
StyleModelsDep = Annotated[StyleModelStore, Depends(style_model_store)]


def inline_links(request: Request) -> LinkedResults:
    return request.app.state.inline_links


InlineLinksDep = Annotated[LinkedResults, Depends(inline_links)]
