"""Run a registered method: the single entry point shared by the API and the worker."""

import time

from pydantic import BaseModel, ValidationError

from engine.concurrency import GATE
from engine.errors import InvalidParams
from engine.models import load_model
from engine.models.support import check_supported
from engine.progress import Progress, no_progress
from engine.registry import Inputs, Method, get_method
from engine.result import Result


def parse_params(method: Method, params: dict | BaseModel | None) -> BaseModel:
    """Validate raw params against the method's model (raises InvalidParams).

    Unknown keys are refused: a misspelt param must not silently fall back to its default.
    """
    if isinstance(params, method.params):
        return params
    if params is not None and not isinstance(params, dict):
        raise InvalidParams(f"params for {method.name} must be an object, not {type(params).__name__}")
    unknown = sorted(set(params or {}) - set(method.params.model_fields))
    if unknown:
        known = ", ".join(method.params.model_fields) or "none"
        raise InvalidParams(f"unknown params for {method.name}: {', '.join(unknown)} (known: {known})")
    try:
        return method.params.model_validate(params or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'params'}: {e['msg']}" for e in exc.errors())
        raise InvalidParams(f"invalid params for {method.name}: {problems}") from exc


def shape_inputs(method: Method, inputs: dict) -> dict:
    """``inputs`` with a single value given for a ``many`` slot taken as a list of one (other values as they are)."""
    many = {slot.name for slot in method.inputs if slot.many}
    return {name: [value] if name in many and not isinstance(value, list) else value for name, value in inputs.items()}


def check_inputs(method: Method, inputs: Inputs) -> None:
    for slot in method.inputs:
        value = inputs.get(slot.name)
        if value is None:
            if slot.optional:
                continue
            raise InvalidParams(f"method {method.name!r} needs input {slot.name!r}")
        count = len(value) if isinstance(value, list) else 1
        if slot.many and not slot.min_count <= count <= slot.max_count:
            raise InvalidParams(
                f"input {slot.name!r} takes {slot.min_count}..{slot.max_count} images, got {count}"
            )
        if not slot.many and isinstance(value, list):
            raise InvalidParams(f"input {slot.name!r} takes one image, got {count}")
    unknown = set(inputs) - {slot.name for slot in method.inputs}
    if unknown:
        raise InvalidParams(f"method {method.name!r} takes no input named {', '.join(sorted(unknown))}")


def run_method(
    name: str,
    model_name: str,
    inputs: Inputs,
    params: dict | BaseModel | None = None,
    progress: Progress = no_progress,
    device: str | None = None,
    cache=None,
) -> Result:
    """Validate everything, load the (cached) model and run the method.

    ``cache`` (an :class:`engine.inspect.collection.FeatureCache`) reaches the
    methods that reuse derived data (``uses_cache``); others never see it.

    ``data["timings"]`` gets the wall time; ``data["model"]``/``data["method"]``
    name what ran.
    """
    method = get_method(name)
    parsed = parse_params(method, params)
    inputs = shape_inputs(method, inputs)
    check_inputs(method, inputs)
    model = load_model(model_name, device)
    check_supported(model.spec, method)
    start = time.perf_counter()
    extra = (cache,) if method.uses_cache else ()
    with GATE.shared():  # calls run concurrently; only building a traced copy waits for them
        result = method.run(model, inputs, parsed, progress, *extra)
    result.data["method"] = name
    result.data["model"] = model_name
    result.data.setdefault("params", parsed.model_dump(mode="json"))
    result.data.setdefault("timings", {})["total_ms"] = round((time.perf_counter() - start) * 1000, 3)
    return result
