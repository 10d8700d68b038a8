"""The model catalogue: built-in and registered models, with layers, labels, preprocessing
and which methods each supports; registering and removing a model file."""

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import ModelStoreDep, RegistrationAllowed, TenantDep
from api.problems import Problem
from api.schemas import BINARY, upload_body
from engine.errors import UnknownModel
from engine.models import ModelSpec, get_spec, list_specs, load_model
from engine.models.support import method_support
from engine.registry import all_methods
from worker.model_store import ModelNameTaken, ModelStore
from worker.broker import BrokerUnavailable

router = APIRouter(prefix="/v1", tags=["models"])

MODEL_UPLOAD_PATH = "/v1/models"
MODEL_METADATA_BYTES = 8 * 1024 * 1024  # labels of a large classifier fit

_REGISTER_BODY = upload_body(
    {
        "file": {**BINARY, "description": "ONNX or torch.export (.pt2) file"},
        "metadata": {"type": "string", "description": "JSON: name, preprocessing, input_size, labels, optional gradcam_layer, embedding_layer, first_conv, format, eval_fit"},
    },
    ["file", "metadata"],
)


def _visible_spec(name: str, tenant: str) -> ModelSpec:
    spec = get_spec(name)
    if spec.owner is not None and spec.owner != tenant:
        raise UnknownModel(f"unknown model {name!r}")
    return spec


@router.get("/models", summary="List the models: built-in and registered")
def list_models(store: ModelStoreDep, tenant: TenantDep) -> dict:
    models = [spec.as_dict() for spec in list_specs() if spec.builtin]
    try:
        records = store.owned(tenant)
    except BrokerUnavailable:
        return {"models": models, "registered_unavailable": True}
    for record in records:
        spec = store.spec_for(record.name)
        if spec is not None:
            models.append({**spec.as_dict(), **record.as_dict()})
    return {"models": models}


@router.get("/models/{name}", summary="One model: preprocessing, layers (at an input size), labels and supported methods")
def describe_model(
    name: str,
    store: ModelStoreDep,
    tenant: TenantDep,
    height: int | None = Query(None, ge=16, le=1024, description="input height for the layer shapes (default: native)"),
    width: int | None = Query(None, ge=16, le=1024, description="input width for the layer shapes (default: native)"),
) -> dict:
    spec = _visible_spec(name, tenant)
    size = (height or spec.input_size[0], width or spec.input_size[1])
    model = load_model(name)
    described = {
        **spec.as_dict(),
        "layers_input_size": list(size),
        "layers": [info.as_dict() for info in model.catalogue(size)],
        "labels": list(spec.labels) if spec.labels else [],
        "supported_methods": method_support(spec, all_methods()),
    }
    if not spec.builtin:
        record = store.record(name)
        if record is not None:
            described.update(record.as_dict())
    return described


@router.post(
    "/models",
    status_code=201,
    summary="Register a model file (multipart: 'file' and JSON 'metadata'); validated by running it once",
    openapi_extra=_REGISTER_BODY,
    dependencies=[RegistrationAllowed],
)
async def register_model(request: Request, response: Response, store: ModelStoreDep, tenant: TenantDep) -> dict:
    data, metadata = await _model_upload(request)
    limit = request.app.state.settings.max_model_bytes
    if len(data) > limit:
        raise Problem(413, "model_too_large", f"the model file is {len(data)} bytes, over the {limit}-byte limit")
    record = await run_in_threadpool(_register, store, tenant, metadata, data)
    response.headers["Location"] = f"/v1/models/{record.name}"
    return await run_in_threadpool(describe_model, record.name, store, tenant, None, None)


def _register(store: ModelStore, tenant: str, metadata: str, data: bytes):
    try:
        return store.register(tenant, metadata, data)
    except ModelNameTaken as exc:
        raise Problem(409, "model_name_taken", str(exc)) from None


@router.delete("/models/{name}", status_code=204, summary="Remove a registered model", dependencies=[RegistrationAllowed])
def delete_model(name: str, store: ModelStoreDep, tenant: TenantDep) -> Response:
    try:
        builtin = get_spec(name).builtin
    except UnknownModel:
        builtin = False
    if builtin:
        raise Problem(409, "builtin_model", f"{name!r} is a built-in model; only registered models can be removed")
    store.delete(tenant, name)
    return Response(status_code=204)


async def _model_upload(request: Request) -> tuple[bytes, str]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Problem(415, "multipart_required", "send the model as multipart/form-data with fields 'file' and 'metadata'")
    form = await request.form(max_files=1, max_fields=4, max_part_size=MODEL_METADATA_BYTES)
    upload, metadata = form.get("file"), form.get("metadata")
    if upload is None or isinstance(upload, str):
        raise Problem(400, "missing_file", "send the model file in a multipart field named 'file'")
    if not isinstance(metadata, str):
        raise Problem(400, "missing_metadata", "send the model's metadata as JSON in a multipart field named 'metadata'")
    data = await upload.read()
    if not data:
        raise Problem(400, "missing_file", "the model file is empty")
    return data, metadata


@router.get("/methods", tags=["methods"], summary="Every method, with its inputs and params schema")
def list_methods() -> dict:
    return {"methods": [method.as_dict() for method in all_methods()]}
