"""Uploaded images: stored once under their content hash, referenced by jobs through that id."""

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import JobsDep, SettingsDep
from api.problems import Problem
from worker.uploads import read_image, store_image

router = APIRouter(prefix="/v1", tags=["images"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}, "required": ["file"]}
            },
            "image/*": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/images",
    status_code=201,
    summary="Upload an image (multipart field 'file', or the raw bytes as the body)",
    openapi_extra=_UPLOAD_BODY,
    responses={200: {"description": "already stored (same bytes)"}, 201: {"description": "stored"}},
)
async def upload_image(request: Request, service: JobsDep, settings: SettingsDep, response: Response) -> dict:
    data = await _upload_bytes(request)
    stored, created = await run_in_threadpool(store_image, service.storage, data, settings.max_image_pixels)
    response.headers["Location"] = f"/v1/images/{stored.id}"
    if not created:
        response.status_code = 200
    return {**stored.as_dict(), "url": f"/v1/images/{stored.id}"}


@router.get("/images/{image_id}", summary="The bytes of an uploaded image")
def get_image(image_id: str, service: JobsDep) -> Response:
    data, media_type = read_image(service.storage, image_id)
    return Response(data, media_type=media_type, headers={"Cache-Control": "public, max-age=31536000, immutable"})


async def _upload_bytes(request: Request) -> bytes:
    """The uploaded file's bytes; the body-size middleware has already refused bodies over the limit."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise Problem(400, "missing_file", "send the image in a multipart field named 'file'")
        data = await upload.read()
    else:
        data = await request.body()
    if not data:
        raise Problem(400, "missing_file", "the upload is empty")
    return data
