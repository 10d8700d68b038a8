"""The FastAPI application factory (``uvicorn --factory api.app:create_app``)."""

from fastapi import FastAPI

from api.problems import install_problem_handlers
from api.routes import ROUTERS
from worker.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(
        title="ConvLens",
        version="0.1.0",
        description="See what a convolutional network sees and learned: the methods of CS231n's "
        "'Visualizing and Understanding' over HTTP, inline or as jobs.",
    )
    app.state.settings = settings or get_settings()
    install_problem_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
