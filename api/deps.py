"""Dependencies declared once as ``Annotated`` aliases."""

from typing import Annotated

from fastapi import Depends, Request

from api.inline_pool import InlinePool
from api.inline_request import ImageResolver, refuse_image_refs
from worker.settings import Settings


def app_settings(request: Request) -> Settings:
    return request.app.state.settings


def inline_pool(request: Request) -> InlinePool:
    pool = getattr(request.app.state, "inline_pool", None)
    if pool is None:
        raise RuntimeError("the inline pool is created in the app's lifespan; start the app with it")
    return pool


def image_resolver(request: Request) -> ImageResolver:
    """How an ``image_id`` in an inline request becomes bytes.

    The one place to wire inline requests to image storage; until then ids are
    refused with 422 ``image_refs_unavailable``.
    """
    return refuse_image_refs


SettingsDep = Annotated[Settings, Depends(app_settings)]
InlinePoolDep = Annotated[InlinePool, Depends(inline_pool)]
ImageResolverDep = Annotated[ImageResolver, Depends(image_resolver)]
