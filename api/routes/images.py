"""Uploaded images: stored once under their content hash, referenced by jobs through that id."""

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import JobsDep, KeyDep, QuotasDep, SettingsDep, TenantDep, require_scope
from api.multipart import read_form
from api.problems import Problem
from api.image_uploads import store_upload
from api.schemas import BINARY, upload_body
from worker.uploads import read_image

router = APIRouter(prefix="/v1", tags=["images"])

_UPLOAD_BODY = upload_body({"file": BINARY}, ["file"], raw="image/*")


@router.post(
    "/images",
    status_code=201,
    summary="Upload an image (multipart field 'file', or the raw bytes as the body)",
    openapi_extra=_UPLOAD_BODY,
    responses={200: {"description": "already stored (same bytes)"}, 201: {"description": "stored"}},
    dependencies=[Depends(require_scope("submit"))],
)
async def upload_image(
    request: Request, service: JobsDep, settings: SettingsDep, key: KeyDep, quotas: QuotasDep, response: Response
) -> dict:
    data = await _upload_bytes(request)
    stored, created = await run_in_threadpool(store_upload, service, settings, key, quotas, data)
    response.headers["Location"] = f"/v1/images/{stored.id}"
    if not created:
        response.status_code = 200
    return {**stored.as_dict(), "url": f"/v1/images/{stored.id}"}


@router.get(
    "/images/{image_id}",
    summary="The bytes of an uploaded image",
    response_class=Response,
    responses={200: {"description": "the image as uploaded", "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}}},
)
def get_image(image_id: str, service: JobsDep, tenant: TenantDep) -> Response:
    data, media_type = read_image(service.storage, image_id, tenant)
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=31536000, immutable"})


async def _upload_bytes(request: Request) -> bytes:
    """The uploaded file's bytes; the body-size middleware has already refused bodies over the limit."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await read_form(request, max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Problem(400, "missing_file", "send the image in a multipart field named 'file'")
        data = await upload.read()
    else:
        data = await request.body()
    if not data:
        raise Problem(400, "missing_file", "the upload is empty")
    return data
