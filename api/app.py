"""The FastAPI application factory (``uvicorn --factory api.app:create_app``)."""

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api.body_limit import BodySizeLimit
from api.deps import app_redis, current_key, make_collection_store, require_scope
from api.inline_links import LinkedResults
from api.metrics import Metrics
from api.observability import Observe
from api.inline_batcher import InlineBatcher
from api.inline_pool import InlinePool
from api.job_schemas import job_components
from api.openapi import install_openapi, route_operation_id
from api.problems import install_problem_handlers
from api.routes import PUBLIC_ROUTERS, ROUTERS
from api.routes.docs import ASSETS, docs_assets
from api.routes.inline import inline_router
from api.routes.kserve import kserve_router
from api.routes.models import MODEL_METADATA_BYTES, MODEL_UPLOAD_PATH
from api.routes.web import static_files
from engine.models import load_model
from api.settings import Settings, get_settings
from engine.models.zoo import CACHE
from worker.allocator import keep_freed_memory
from worker.model_store import model_store_getter
from worker.plugins import load_plugins
from worker.samples import ensure_samples
from worker.storage import StorageUnavailable

log = logging.getLogger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    pool = InlinePool(settings.inline_threads, settings.inline_backlog, settings.inline_per_key)
    pool.batcher = InlineBatcher(settings.inline_max_batch, settings.inline_batch_delay_ms / 1000, settings.device,
                                 lambda method, size: app.state.metrics.inline_batch.labels(method).observe(size),
                                 crowded=lambda: pool.pending > 1, runners=settings.inline_batch_runners, lend=pool.lend_slot)
    app.state.inline_pool = pool
    try:
        for name in settings.warm_models:
            await asyncio.to_thread(load_model, name, settings.device)
        if settings.builtin_samples:
            await _make_samples(app)
        yield
    finally:
        await asyncio.to_thread(pool.close)
        app.state.inline_pool = None


async def _make_samples(app: FastAPI) -> None:
    try:
        store = app.state.collection_store = make_collection_store(app)
        await asyncio.to_thread(ensure_samples, store)
    except StorageUnavailable as exc:
        log.warning("built-in samples collection not made (storage unavailable): %s", exc)


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="ConvLens",
        version="0.1.0",
        description="See what a convolutional network sees and learned: the methods of CS231n's "
        "'Visualizing and Understanding' over HTTP, inline or as jobs.",
        lifespan=lifespan,
        generate_unique_id_function=route_operation_id,
        docs_url=None,  # FastAPI's pages load their scripts from a CDN; api.routes.docs serves its own
        redoc_url=None,
    )
    app.state.settings = settings or get_settings()
    app.state.inline_links = LinkedResults(app.state.settings.inline_link_seconds, app.state.settings.inline_link_max_results)
    app.state.model_store = model_store_getter(app.state.settings)
    CACHE.resize(app.state.settings.model_cache_bytes)
    keep_freed_memory(app.state.settings.malloc_keep_bytes)
    load_plugins(app.state.settings)  # before the routes and the catalogue are made from the registry
    install_problem_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=app.state.settings.max_upload_bytes,
        route_limits={MODEL_UPLOAD_PATH: app.state.settings.max_model_bytes + MODEL_METADATA_BYTES},
    )
    app.state.metrics = Metrics(lambda: app_redis(app), worker_max_age_seconds=app.state.settings.job_time_limit)
    app.add_middleware(Observe, metrics=app.state.metrics)  # outermost: sees every answer, 413s included
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(current_key)])
    for router in PUBLIC_ROUTERS:
        app.include_router(router)
    app.mount("/static", static_files(), name="static")
    app.mount(ASSETS, docs_assets(), name="docs-assets")
    kserve, kserve_schemas = kserve_router()
    app.include_router(kserve, dependencies=[Depends(require_scope("submit"))])  # inline calls, as KServe's V1 protocol
    inline, components = inline_router()
    # last: its catch-all answers POSTs to unknown method names
    app.include_router(inline, dependencies=[Depends(require_scope("submit"))])
    job_body, job_schemas = job_components()
    install_openapi(app, {**components, **kserve_schemas, **job_schemas}, {"submit_job": job_body})
    return app
