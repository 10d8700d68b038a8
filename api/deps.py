"""Dependencies declared once as ``Annotated`` aliases."""

import threading
from typing import Annotated

from fastapi import Depends, Request

from api.inline_links import LinkedResults
from api.inline_pool import InlinePool
from api.inline_request import ImageResolver
from worker.service import JobService
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


def image_resolver(request: Request) -> ImageResolver:
    """How an ``image_id`` in an inline request becomes bytes: read from the jobs' image store.

    Called in the inline pool (storage I/O stays off the event loop) and only
    for ids, so pictures sent inline never touch storage. Unknown or malformed
    ids raise UnknownImage (404 ``unknown_image``).
    """

    def resolve(image_id: str) -> bytes:
        return image_bytes(job_service(request).storage, image_id)

    return resolve


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


def inline_links(request: Request) -> LinkedResults:
    return request.app.state.inline_links


InlineLinksDep = Annotated[LinkedResults, Depends(inline_links)]
