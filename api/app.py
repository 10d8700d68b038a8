"""The FastAPI application factory (``uvicorn --factory api.app:create_app``)."""

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.body_limit import BodySizeLimit
from api.inline_links import LinkedResults
from api.inline_pool import InlinePool
from api.job_schemas import job_components
from api.openapi import install_openapi, route_operation_id
from api.problems import install_problem_handlers
from api.routes import ROUTERS
from api.routes.inline import inline_router
from api.routes.web import static_files
from engine.models import load_model
from worker.plugins import load_plugins
from worker.settings import Settings, get_settings


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    pool = InlinePool(settings.inline_threads, settings.inline_backlog)
    app.state.inline_pool = pool
    try:
        for name in settings.warm_models:
            await pool.run(load_model, name, settings.device)
        yield
    finally:
        await asyncio.to_thread(pool.close)
        app.state.inline_pool = None


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="ConvLens",
        version="0.1.0",
        description="See what a convolutional network sees and learned: the methods of CS231n's "
        "'Visualizing and Understanding' over HTTP, inline or as jobs.",
        lifespan=lifespan,
        generate_unique_id_function=route_operation_id,
    )
    app.state.settings = settings or get_settings()
    app.state.inline_links = LinkedResults(app.state.settings.inline_link_seconds, app.state.settings.inline_link_max_results)
    load_plugins(app.state.settings)  # before the routes and the catalogue are made from the registry
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=app.state.settings.max_upload_bytes)
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", static_files(), name="static")
    inline, components = inline_router()
    app.include_router(inline)  # last: its catch-all answers POSTs to unknown method names
    job_body, job_schemas = job_components()
    install_openapi(app, {**components, **job_schemas}, {"submit_job": job_body})
    return app
