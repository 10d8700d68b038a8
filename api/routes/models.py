"""The model catalogue: what can be explained, with layers, labels and preprocessing."""

from fastapi import APIRouter, Query

from engine.models import get_spec, list_specs, load_model
from engine.registry import all_methods

router = APIRouter(prefix="/v1", tags=["models"])


@router.get("/models", summary="List the models")
def list_models() -> dict:
    return {"models": [spec.as_dict() for spec in list_specs()]}


@router.get("/models/{name}", summary="One model: preprocessing, layers (at an input size) and labels")
def describe_model(
    name: str,
    height: int | None = Query(None, ge=16, le=1024, description="input height for the layer shapes (default: native)"),
    width: int | None = Query(None, ge=16, le=1024, description="input width for the layer shapes (default: native)"),
) -> dict:
    spec = get_spec(name)
    size = (height or spec.input_size[0], width or spec.input_size[1])
    model = load_model(name)
    return {
        **spec.as_dict(),
        "layers_input_size": list(size),
        "layers": [info.as_dict() for info in model.catalogue(size)],
        "labels": list(spec.labels) if spec.labels else [],
    }


@router.get("/methods", tags=["methods"], summary="Every method, with its inputs and params schema")
def list_methods() -> dict:
    return {"methods": [method.as_dict() for method in all_methods()]}
