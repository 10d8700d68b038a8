"""Dependencies declared once as ``Annotated`` aliases."""

import threading
from typing import Annotated

from fastapi import Depends, Request

from api.inline_pool import InlinePool
from api.inline_request import CollectionResolver, ImageResolver
from worker.collections import CollectionLimits, CollectionStore
from worker.feature_store import StoredFeatures
from worker.service import JobService
from worker.style_models import StyleModelStore
from worker.settings import Settings
from worker.uploads import image_bytes

_SERVICE_LOCK = threading.Lock()


def app_settings(request: Request) -> Settings:
    return request.app.state.settings


def inline_pool(request: Request) -> InlinePool:
    pool = getattr(request.app.state, "inline_pool", None)
    if pool is None:
        raise RuntimeError("the inline pool is created in the app's lifespan; start the app with it")
    return pool


def job_service(request: Request) -> JobService:
    """One JobService per app (Redis pool, storage client, Celery producer), made on first use.

    Making it connects to nothing, so an app without Redis still answers
    everything but jobs; a broker or storage that is down surfaces as 503
    (api.problems) when a route uses it.
    """
    with _SERVICE_LOCK:
        service = getattr(request.app.state, "job_service", None)
        if service is None:
            service = request.app.state.job_service = JobService(request.app.state.settings)
    return service


def collection_store(request: Request) -> CollectionStore:
    """The app's collection store, on the jobs' object storage."""
    storage = job_service(request).storage
    with _SERVICE_LOCK:
        store = getattr(request.app.state, "collection_store", None)
        if store is None:
            store = request.app.state.collection_store = make_collection_store(request.app.state.settings, storage)
    return store


def make_collection_store(settings: Settings, storage) -> CollectionStore:
    limits = CollectionLimits(settings.collection_max_images, settings.collection_max_bytes, settings.collection_max_pixels, settings.max_image_pixels)
    return CollectionStore(storage, limits)


def image_resolver(request: Request) -> ImageResolver:
    """How an ``image_id`` in an inline request becomes bytes: read from the jobs' image store.

    Called in the inline pool (storage I/O stays off the event loop) and only
    for ids, so pictures sent inline never touch storage. Unknown or malformed
    ids raise UnknownImage (404 ``unknown_image``).
    """

    def resolve(image_id: str) -> bytes:
        return image_bytes(job_service(request).storage, image_id)

    return resolve


def collection_resolver(request: Request) -> CollectionResolver:
    """How a ``{"collection": id}`` inline input becomes image ids: the tenant's collection (404 if not theirs)."""
    tenant = current_tenant(request)

    def resolve(collection_id: str) -> list[tuple[str, str]]:
        return [(m.name, m.id) for m in collection_store(request).get(tenant, collection_id).images]

    return resolve


def style_model_store(request: Request) -> StyleModelStore:
    """One store per app: it keeps recently used networks loaded."""
    storage = job_service(request).storage
    with _SERVICE_LOCK:
        store = getattr(request.app.state, "style_model_store", None)
        if store is None:
            store = request.app.state.style_model_store = StyleModelStore(storage)
    return store


def feature_cache(request: Request) -> StoredFeatures:
    return StoredFeatures(job_service(request).storage)


def current_tenant(request: Request) -> str:
    """The tenant a request acts for: every stored resource belongs to one, and lookups take it.

    Open mode (no API keys configured) has a single tenant, ``public``.
    """
    return "public"


SettingsDep = Annotated[Settings, Depends(app_settings)]
InlinePoolDep = Annotated[InlinePool, Depends(inline_pool)]
JobsDep = Annotated[JobService, Depends(job_service)]
ImageResolverDep = Annotated[ImageResolver, Depends(image_resolver)]
TenantDep = Annotated[str, Depends(current_tenant)]
CollectionsDep = Annotated[CollectionStore, Depends(collection_store)]
CollectionResolverDep = Annotated[CollectionResolver, Depends(collection_resolver)]
FeatureCacheDep = Annotated[StoredFeatures, Depends(feature_cache)]
StyleModelsDep = Annotated[StyleModelStore, Depends(style_model_store)]
