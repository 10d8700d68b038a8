"""Linked artifacts of inline answers (:mod:`api.inline_links`)."""

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from api.deps import InlineLinksDep, TenantDep

router = APIRouter(prefix="/v1", tags=["inline"])


@router.get(
    "/results/{result_id}/{name}",
    summary="Download an artifact an inline answer linked (PNG or .npy), for a few minutes",
    response_class=Response,
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}},
                                 "application/x-npy": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def get_inline_artifact(result_id: str, name: str, links: InlineLinksDep, tenant: TenantDep) -> Response:
    artifact = await run_in_threadpool(links.artifact, result_id, name, tenant)
    return Response(artifact.content, media_type=artifact.media_type, headers={"Cache-Control": "private, max-age=300"})
