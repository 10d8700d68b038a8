"""The model catalogue: built-in models and the tenant's registered ones (plus those the operator published),
with layers, labels, preprocessing and which methods each supports; registering, removing and publishing."""

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import ModelStoreDep, RegistrationAllowed, TenantDep, require_operator
from api.multipart import read_form
from api.problems import Problem
from api.schemas import BINARY, upload_body
from engine.errors import UnsupportedModel
from engine.models import builtin_specs, find_spec, load_model
from engine.models.layer_roles import all_roles
from engine.models.profile import model_profile
from engine.models.support import method_support, size_refusal
from engine.registry import all_methods
from worker.broker import BrokerUnavailable
from worker.model_store import ModelNameTaken, ModelRecord, ModelStore

router = APIRouter(prefix="/v1", tags=["models"])
OPERATOR = Depends(require_operator)

MODEL_UPLOAD_PATH = "/v1/models"
MODEL_METADATA_BYTES = 8 * 1024 * 1024  # labels of a large classifier fit

_REGISTER_BODY = upload_body(
    {
        "file": {**BINARY, "description": "ONNX or torch.export (.pt2) file"},
        "metadata": {"type": "string", "description": "JSON: name, preprocessing, input_size, labels, optional gradcam_layer, embedding_layer, first_conv, format, eval_fit"},
    },
    ["file", "metadata"],
)


def _record_fields(store: ModelStore, record: ModelRecord, tenant: str) -> dict:
    shown = record.as_dict() if record.owner == tenant else {k: v for k, v in record.as_dict().items() if k != "owner"}
    return {**shown, "published": store.is_published(record)}


@router.get("/models", summary="List the models this tenant can use: built-in, its own registered ones and published ones")
def list_models(store: ModelStoreDep, tenant: TenantDep) -> dict:
    models = [spec.as_dict() for spec in builtin_specs()]
    try:
        records = store.visible(tenant)
    except BrokerUnavailable:
        return {"models": models, "registered_unavailable": True}
    for record in records:
        models.append({**store.spec_of(record).as_dict(), **_record_fields(store, record, tenant)})
    return {"models": models}


@router.get("/models/{name}", summary="One model: preprocessing, layers (at an input size), labels and supported methods")
def describe_model(
    name: str,
    store: ModelStoreDep,
    tenant: TenantDep,
    height: int | None = Query(None, ge=16, le=1024, description="input height for the layer shapes (default: native)"),
    width: int | None = Query(None, ge=16, le=1024, description="input width for the layer shapes (default: native)"),
) -> dict:
    spec = find_spec(name, tenant, store.spec_for)
    size = (height or spec.input_size[0], width or spec.input_size[1])
    native = model_profile(spec).catalogue()  # no network is loaded for the native size
    if size == tuple(spec.input_size):
        layers = native
    else:
        refusal = size_refusal(spec, size)
        if refusal is not None:
            raise UnsupportedModel(refusal)
        layers = load_model(spec).catalogue(size)
    described = {
        **spec.as_dict(),
        "layers_input_size": list(size),
        "layers": [info.as_dict() for info in layers],
        "labels": list(spec.labels) if spec.labels else [],
        "layer_roles": all_roles(spec, native),
        "supported_methods": method_support(spec, all_methods()),
    }
    if not spec.builtin:
        record = store.get(tenant, name)
        if record is not None:
            described.update(_record_fields(store, record, tenant))
    return described


@router.post(
    "/models",
    status_code=201,
    summary="Register a model file (multipart: 'file' and JSON 'metadata'), vetted before it is ever loaded",
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


@router.delete("/models/{name}", status_code=204, summary="Remove one of this tenant's registered models", dependencies=[RegistrationAllowed])
def delete_model(name: str, store: ModelStoreDep, tenant: TenantDep) -> Response:
    if find_spec(name, tenant, store.spec_for).builtin:
        raise Problem(409, "builtin_model", f"{name!r} is a built-in model; only registered models can be removed")
    store.delete(tenant, name)
    return Response(status_code=204)


@router.post("/models/{name}/publish", status_code=204, summary="Operator: let every tenant use one of the operator's models",
             dependencies=[OPERATOR])
def publish_model(name: str, store: ModelStoreDep, tenant: TenantDep) -> Response:
    try:
        store.publish(tenant, name)
    except ModelNameTaken as exc:
        raise Problem(409, "model_name_taken", str(exc)) from None
    return Response(status_code=204)


@router.delete("/models/{name}/publish", status_code=204, summary="Operator: stop publishing a model (tenants lose it at once)",
               dependencies=[OPERATOR])
def unpublish_model(name: str, store: ModelStoreDep, tenant: TenantDep) -> Response:
    if not store.unpublish(tenant, name):
        raise Problem(404, "unknown_model", f"you publish no model {name!r}")
    return Response(status_code=204)


async def _model_upload(request: Request) -> tuple[bytes, str]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise Problem(415, "multipart_required", "send the model as multipart/form-data with fields 'file' and 'metadata'")
    form = await read_form(request, max_files=1, max_fields=4, max_part_size=MODEL_METADATA_BYTES)
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
