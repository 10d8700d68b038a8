"""Style models (trained by ``train_style_model`` jobs): list, read, delete, and apply inline (``POST /v1/stylize``)."""

import time

from fastapi import Depends, APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from api.deps import InlinePoolDep, JobsDep, SettingsDep, StyleModelsDep, TenantDep, require_scope
from api.json_response import read_json
from api.multipart import read_form
from api.problems import Problem, invalid_request
from api.picture_refs import FORMS, Picture, PictureRef, picture, picture_bytes
from engine.decoding import decode_image
from engine.encoding import png_bytes
from engine.params import Weights, weights
from engine.synthesis.fast_style import MAX_STYLES, style_mix, stylise
from worker.style_models import StyleModelStore, config_of
from worker.uploads import image_bytes

SUBMIT = Depends(require_scope("submit"))  # routes that store, change or compute
router = APIRouter(prefix="/v1", tags=["style models"])


def model_body(record: dict) -> dict:
    return {**record, "links": {"self": f"/v1/style_models/{record['id']}", "job": f"/v1/jobs/{record.get('job')}"}}


@router.get("/style_models", summary="Style models this tenant trained")
def list_style_models(store: StyleModelsDep, tenant: TenantDep) -> dict:
    return {"style_models": [model_body(r) for r in store.list(tenant)]}


@router.get("/style_models/{model_id}", summary="One style model: its styles, size and origin")
def get_style_model(model_id: str, store: StyleModelsDep, tenant: TenantDep) -> dict:
    return model_body(store.get(tenant, model_id))


@router.delete("/style_models/{model_id}", status_code=204, summary="Delete a style model and its weights", dependencies=[SUBMIT])
def delete_style_model(model_id: str, store: StyleModelsDep, tenant: TenantDep) -> Response:
    store.delete(tenant, model_id)
    return Response(status_code=204)


class StylizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    style_model: str = Field(description="a style model id (GET /v1/style_models)")
    style: int | None = Field(None, ge=0, description="which style of a multi-style model (default 0)")
    style_weights: Weights | None = weights(MAX_STYLES, "mix the styles of a multi-style model by these weights (normalised to sum 1)")
    max_side: int = Field(1024, ge=16, le=4096, description="longer pictures are stylised at this side and resized back")
    image: PictureRef | None = Field(None, description=f"the picture (JSON form: {FORMS}; multipart sends it as file field 'image')")


@router.post(
    "/stylize",
    summary="Stylise a picture with a stored style model, in one forward pass",
    response_class=Response,
    responses={200: {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": StylizeRequest.model_json_schema(),
        "example": {"style_model": "<style model id>", "image": {"image_id": "<image id>"}, "max_side": 512},
    }}}},
    dependencies=[SUBMIT],
)
async def stylize(request: Request, store: StyleModelsDep, tenant: TenantDep, pool: InlinePoolDep, settings: SettingsDep, service: JobsDep) -> Response:
    call, given = await _stylize_call(request)
    content, timings = await pool.run(_stylize, store, tenant, call, given, settings.max_image_pixels, service, key=request.state.api_key)
    return Response(content, media_type="image/png", headers={"Server-Timing": f"engine;dur={timings['engine_ms']}, decode;dur={timings['decode_ms']}"})


def _stylize(store: StyleModelStore, tenant: str, call: StylizeRequest, given: Picture, max_pixels: int, service) -> tuple[bytes, dict]:
    record, net = store.network(tenant, call.style_model)  # 404 before any decoding
    mix = style_mix(config_of(record), call.style, call.style_weights)
    start = time.perf_counter()
    picture = decode_image(picture_bytes(given, lambda image_id: image_bytes(service.storage, image_id, tenant)), max_pixels)
    decoded = time.perf_counter()
    out = stylise(net, picture, mix, call.max_side)
    done = time.perf_counter()
    return png_bytes(out), {"decode_ms": round((decoded - start) * 1000, 3), "engine_ms": round((done - decoded) * 1000, 3)}


async def _stylize_call(request: Request) -> tuple[StylizeRequest, Picture]:
    """The request and its picture (named in JSON, or the multipart file)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if content_type == "application/json":
            fields = read_json(await request.body())
            if not isinstance(fields, dict):
                raise Problem(422, "invalid_request", "the body must be a JSON object")
            if fields.get("image") is None:
                raise Problem(422, "missing_input", "stylize needs an image", input="image")
            given = picture(fields.pop("image"), "image", "image")
        elif content_type == "multipart/form-data":
            form = await read_form(request, max_files=1, max_fields=6)
            upload = form.get("image")
            if not isinstance(upload, UploadFile):
                raise Problem(422, "missing_input", "send the picture as the file field 'image'", input="image")
            given = Picture("image", data=await upload.read())
            fields = {k: v for k, v in form.items() if k != "image"}
            for name in ("style", "max_side", "style_weights"):
                if name in fields:
                    fields[name] = read_json(fields[name])
        else:
            raise Problem(415, "unsupported_media_type", "send application/json or multipart/form-data")
        call = StylizeRequest.model_validate(fields)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise invalid_request(exc) from None
        raise Problem(400, "malformed_json", f"unreadable request ({exc})") from None
    return call, given
