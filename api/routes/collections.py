"""Collections: sets of images uploaded together (files or one zip), read by the dataset methods."""

from fastapi import Depends, APIRouter, Query, Request, Response
from PIL import Image
from starlette.concurrency import run_in_threadpool

from api.deps import CollectionsDep, ImageHoldsDep, JobsDep, KeyDep, SettingsDep, TenantDep, key_limit, require_scope
from api.multipart import read_form
from api.problems import Problem
from worker.broker import broker_errors
from api.schemas import BINARY, upload_body
from engine.encoding import png_bytes
from worker.collections import Collection
from worker.uploads import load_image

SUBMIT = Depends(require_scope("submit"))  # routes that store, change or compute
router = APIRouter(prefix="/v1", tags=["collections"])

_UPLOAD_BODY = upload_body(
    {
        "name": {"type": "string", "description": "a name for the collection"},
        "files": {"type": "array", "items": BINARY, "description": "pictures, or zips of pictures (repeat the field)"},
    },
    ["files"],
    raw="application/zip",
)


def collection_body(collection: Collection) -> dict:
    base = f"/v1/collections/{collection.id}"
    return {
        "id": collection.id,
        "name": collection.name,
        "builtin": collection.builtin,
        "content_hash": collection.content_hash,
        "count": len(collection.images),
        "bytes": sum(m.bytes for m in collection.images),
        "images": [
            {"id": m.id, "name": m.name, "width": m.width, "height": m.height, "bytes": m.bytes,
             "url": f"/v1/images/{m.id}", "thumbnail_url": f"{base}/images/{m.id}/thumbnail"}
            for m in collection.images
        ],  # fmt: skip
        "links": {"self": base},
    }


@router.post("/collections", status_code=201, summary="Make a collection from many pictures or one zip", openapi_extra=_UPLOAD_BODY, dependencies=[SUBMIT])
async def create_collection(request: Request, store: CollectionsDep, key: KeyDep, settings: SettingsDep, response: Response,
                            name: str | None = Query(None, max_length=200)) -> dict:
    form_name, files = await _upload(request, store.limits.max_images)
    with broker_errors():
        collection = await run_in_threadpool(store.create, key.tenant, form_name or name or "untitled", files,
                                             max_stored_bytes=key_limit(key, settings, "max_stored_bytes"))
    response.headers["Location"] = f"/v1/collections/{collection.id}"
    return collection_body(collection)


@router.get("/collections", summary="Collections this tenant can read (the built-in ones first)")
def list_collections(store: CollectionsDep, tenant: TenantDep) -> dict:
    return {"collections": [{k: v for k, v in collection_body(c).items() if k != "images"} for c in store.list(tenant)]}


@router.get("/collections/{collection_id}", summary="One collection and its images, with thumbnail links")
def get_collection(collection_id: str, store: CollectionsDep, tenant: TenantDep) -> dict:
    return collection_body(store.get(tenant, collection_id))


@router.post("/collections/{collection_id}/images", summary="Add pictures (or zips of pictures) to a collection", openapi_extra=_UPLOAD_BODY, dependencies=[SUBMIT])
async def add_images(collection_id: str, request: Request, store: CollectionsDep, key: KeyDep, settings: SettingsDep) -> dict:
    store.get(key.tenant, collection_id)  # 404 before reading a large body
    _name, files = await _upload(request, store.limits.max_images)
    with broker_errors():
        grown = await run_in_threadpool(store.add, key.tenant, collection_id, files, max_stored_bytes=key_limit(key, settings, "max_stored_bytes"))
    return collection_body(grown)


@router.delete("/collections/{collection_id}", status_code=204, dependencies=[SUBMIT],
               summary="Delete a collection, and the images nothing else keeps (an upload of their own, another collection, a job)")
def delete_collection(collection_id: str, store: CollectionsDep, tenant: TenantDep, holds: ImageHoldsDep) -> Response:
    removed = store.delete(tenant, collection_id)
    with broker_errors():
        holds.let_go(tenant, removed.image_ids())
    return Response(status_code=204)


@router.get("/collections/{collection_id}/images/{image_id}/thumbnail", summary="A PNG thumbnail of one image of a collection")
def thumbnail(collection_id: str, image_id: str, store: CollectionsDep, tenant: TenantDep, service: JobsDep, settings: SettingsDep,
              size: int = Query(128, ge=16, le=512)) -> Response:  # fmt: skip
    if image_id not in store.get(tenant, collection_id).image_ids():
        raise Problem(404, "unknown_image", f"collection {collection_id!r} has no image {image_id!r}")
    picture = load_image(service.storage, image_id, settings.max_image_pixels, tenant)
    picture.thumbnail((size, size), Image.BILINEAR)
    return Response(png_bytes(picture), media_type="image/png", headers={"Cache-Control": "public, max-age=31536000, immutable"})


async def _upload(request: Request, max_files: int) -> tuple[str | None, list[tuple[str, bytes]]]:
    """(name field, [(file name, bytes)]) from a multipart form, or one raw zip body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("application/zip", "application/x-zip-compressed"):
        return None, [("upload.zip", await request.body())]
    if content_type != "multipart/form-data":
        raise Problem(415, "unsupported_media_type", "send multipart/form-data (field 'files', repeated) or an application/zip body")
    form = await read_form(request, max_files=max_files, max_fields=4, too_many_files="too_many_images")
    try:
        uploads = [value for value in form.getlist("files") if not isinstance(value, str)]
        if not uploads:
            raise Problem(400, "missing_file", "send the pictures (or a zip) in multipart fields named 'files'")
        files = [(upload.filename or f"file{i}", await upload.read()) for i, upload in enumerate(uploads)]
        name = form.get("name")
        return (name if isinstance(name, str) else None), files
    finally:
        await form.close()
