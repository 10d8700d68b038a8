"""KServe's V1 inference protocol over ConvLens's methods: ``:predict`` classifies, ``:explain`` attributes.

The protocol (KServe's "Inference Protocol V1",
https://kserve.github.io/website/docs/concepts/architecture/data-plane/v1-protocol): ``POST
/v1/models/<name>:predict`` with ``{"instances": [...]}`` (or ``{"inputs": [...]}``, the same)
answers ``{"predictions": [...]}``; ``:explain`` answers ``{"predictions": [...], "explanations":
[...]}``; one item per instance, in order. The protocol leaves an instance's form to the model;
the forms KServe's docs send pictures in are read here (:data:`FORMS`). Options travel in
``"parameters"``, the name the V2 protocol gives them (V1 names none).

The method is prepared once on the one call path (:func:`engine.run.prepare`), for the caller's
tenant, and the instances run through it in batches (:func:`engine.run.run_calls`, as a request with
several pictures does) in the inline pool; the request as a whole must fit the inline budget.
Everything here runs in the pool, off the event loop.
"""

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from api.inline_progress import InlineProgress
from api.inline_response import answer_json
from api.json_response import read_json
from api.problems import Problem
from api.routes.inline import Caller, run_in_batches
from api.settings import Settings
from engine.capabilities import CLASSIFIER
from engine.cost import Cost
from engine.errors import EngineError
from engine.decoding import decode_base64, decode_image, decode_pixels
from engine.registry import Method, all_methods
from engine.result import Result
from engine.run import Call, prepare
from engine.validation import describe_errors

Verb = Literal["predict", "explain"]
DEFAULT_EXPLAINER = "saliency"
ONE_PICTURE = {"image": 1}
FORMS = ('{"image": {"b64": "<file in base64>"}}, {"image_bytes": {"b64": ...}}, {"data": "<file in base64>"}, '
         '{"b64": ...} (each may carry a "key", echoed), or a [height][width][3] list of pixel values')


def explainers() -> list[Method]:
    """The methods ``:explain`` runs: inline ones that make a per-pixel map of a class from one picture."""
    return [method for method in all_methods() if method.inline and method.evaluable]


# -- the request ------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One instance: a file in base64, or pixel values; ``echo`` is what its answer repeats (its ``key``)."""

    label: str  # where it was given: instances[2]
    base64: str | None = None
    pixels: Any = None
    echo: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class KServeRequest:
    instances: list[Instance]
    parameters: dict[str, Any]


def read_request(body: bytes) -> KServeRequest:
    """The JSON body, whatever its Content-Type (KServe's server reads it so; its docs' curl examples send none)."""
    try:
        document = read_json(body)
    except ValueError as exc:
        raise Problem(400, "malformed_json", f"the body is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise Problem(422, "invalid_request", 'the body is a JSON object: {"instances": [...], "parameters": {...}}')
    unknown = sorted(set(document) - {"instances", "inputs", "parameters"})
    if unknown:
        raise Problem(422, "unknown_field", f"the body takes instances (or inputs) and parameters, not {', '.join(map(repr, unknown))}; "
                      "options such as the method go in parameters")
    roots = [root for root in ("instances", "inputs") if root in document]
    if len(roots) != 1:
        raise Problem(422, "invalid_request", 'send the pictures as "instances" or as "inputs" (the same), '
                      + ("not both" if roots else "a list of at least one"))
    root, values = roots[0], document[roots[0]]
    if not isinstance(values, list) or not values:
        raise Problem(422, "invalid_request", f'"{root}" is a list of at least one instance: {FORMS}')
    parameters = document.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise Problem(422, "invalid_params", '"parameters" is a JSON object, e.g. {"method": "gradcam", "target_class": "tabby"}')
    return KServeRequest([read_instance(value, f"{root}[{i}]") for i, value in enumerate(values)], parameters or {})


def read_instance(value: Any, label: str) -> Instance:
    """One instance in a form of :data:`FORMS` (422 ``invalid_instance`` naming it otherwise)."""
    if isinstance(value, list):
        return Instance(label, pixels=value)
    if isinstance(value, dict):
        echo = {"key": value["key"]} if "key" in value else {}
        fields = {name: inner for name, inner in value.items() if name != "key"}
        if len(fields) == 1:
            ((name, inner),) = fields.items()
            if name == "b64" and isinstance(inner, str):  # TF Serving's binary value
                return Instance(label, base64=inner, echo=echo)
            if name in ("image", "image_bytes") and isinstance(inner, dict) and set(inner) == {"b64"} and isinstance(inner["b64"], str):
                return Instance(label, base64=inner["b64"], echo=echo)
            if name == "data" and isinstance(inner, (str, list)):  # TorchServe's form (a file), or KServe's custom model's (an array)
                return Instance(label, base64=inner, echo=echo) if isinstance(inner, str) else Instance(label, pixels=inner, echo=echo)
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise Problem(422, "invalid_instance", f"{label}: an instance is {FORMS}; got {shown}", input=label)


# -- parameters ---------------------------------------------------------------------


class KServePredictParameters(BaseModel):
    """``parameters`` of ``:predict``: classify's params, and how pixel values read."""

    model_config = ConfigDict(extra="allow")
    max_pixel_value: float = Field(
        255.0, gt=0, allow_inf_nan=False,
        description="the value of a full-intensity pixel in pixel-value instances: 255 for 8-bit values, 1 for values in [0, 1]",
    )


def explain_parameters() -> type[KServePredictParameters]:
    """``parameters`` of ``:explain``, for the methods registered now (plugins included)."""
    return _explain_parameters(tuple(method.name for method in explainers()))


@lru_cache
def _explain_parameters(names: tuple[str, ...]) -> type[KServePredictParameters]:
    return create_model(
        "KServeExplainParameters",
        __base__=KServePredictParameters,
        __doc__="``parameters`` of ``:explain``: the method, its params, and the predictions' top_k.",
        method=(Literal[names], Field(DEFAULT_EXPLAINER, description="the attribution method (its other params go beside it: "
                                      "target_class, layer, fit...; GET /v1/methods)")),
        top_k=(int | None, Field(None, ge=1, le=1000, description="classes in each prediction; default: classify's")),
    )


@dataclass(frozen=True)
class Options:
    max_pixel_value: float
    method: str | None  # explain only
    params: dict[str, Any]  # the method's (explain) or classify's (predict)
    classify: dict[str, Any]  # classify's, for the predictions


def read_parameters(verb: Verb, parameters: dict[str, Any]) -> Options:
    model = KServePredictParameters if verb == "predict" else explain_parameters()
    try:
        parsed = model.model_validate(parameters)
    except ValidationError as exc:
        raise Problem(422, "invalid_params", f"parameters: {describe_errors(exc, 'parameters')}") from None
    rest = dict(parsed.model_extra or {})
    if verb == "predict":
        return Options(parsed.max_pixel_value, None, rest, rest)
    classify = {name: value for name, value in (("fit", rest.get("fit")), ("top_k", parsed.top_k)) if value is not None}
    return Options(parsed.max_pixel_value, parsed.method, rest, classify)


# -- the answer ---------------------------------------------------------------------


def answer(verb: Verb, name: str, body: bytes, settings: Settings, caller: Caller, progress: InlineProgress) -> tuple[bytes, str, dict]:
    """Prepare every call (within the inline budget), decode every instance, run them in order and encode.

    ``name`` is the model's name in the path: a KServe name (``settings.kserve_models``) or a ConvLens one,
    found as the caller's tenant sees it. Returns the body, the method that ran for the metrics and the timings (ms).
    """
    request = read_request(body)
    options = read_parameters(verb, request.parameters)
    model = settings.kserve_models.get(name, name)
    explain = prepare(options.method, model, options.params, ONE_PICTURE, caller.tenant, None, caller.models) if options.method else None
    classify = None
    if explain is None or explain.spec.missing(CLASSIFIER) is None:  # a model with no classes has no predictions
        classify = prepare("classify", model, options.classify, ONE_PICTURE, caller.tenant, None, caller.models)
    calls = [call for call in (classify, explain) if call is not None]
    check_budget(calls, len(request.instances), settings)
    start = time.perf_counter()
    pictures = [decode(instance, options.max_pixel_value, settings.max_image_pixels) for instance in request.instances]
    decode_ms = round((time.perf_counter() - start) * 1000, 3)
    start = time.perf_counter()
    results = {}  # the call's name -> its result for each instance, in order
    for call in calls:
        outcomes = run_in_batches(call, "image", list(enumerate(pictures)), progress, settings)
        failed = next((outcome for outcome in outcomes.values() if isinstance(outcome, EngineError)), None)
        if failed is not None:
            raise failed
        results[call.method.name] = [outcomes[i] for i in range(len(pictures))]
    engine_ms = (time.perf_counter() - start) * 1000  # wall time: the results of one batch each carry the whole batch's
    predictions = [{**prediction(r), **i.echo} for r, i in zip(results["classify"], request.instances)] if classify else []
    explanations = [{**explanation(r), **i.echo} for r, i in zip(results[explain.method.name], request.instances)] if explain else []
    start = time.perf_counter()
    answered = {**({"predictions": predictions} if classify else {}), **({"explanations": explanations} if explain else {})}
    content = answer_json(answered)
    timings = {"total_ms": round(engine_ms, 3), "decode_ms": decode_ms, "encode_ms": round((time.perf_counter() - start) * 1000, 3)}
    return content, calls[-1].method.name, timings


def check_budget(calls: list[Call], count: int, settings: Settings) -> None:
    """The whole request against the inline budget, as one inline call: each call's cost for ``count`` pictures
    (run ``inline_max_batch`` at a time) adds up in passes and output pixels; memory is the largest batch's."""
    costs = [call.cost.for_pictures(count, settings.inline_max_batch) for call in calls]
    total = Cost(sum(cost.passes for cost in costs), sum(cost.pixels for cost in costs), max(cost.bytes for cost in costs))
    over = settings.inline_budget().excess(total)
    if over:
        method = calls[-1].method.name
        raise Problem(422, "over_inline_budget", f"{count} instance(s) of {method} would need {' and '.join(over)}, over the "
                      f"inline budget; send fewer instances per request, or submit jobs (POST /v1/jobs with method={method!r})",
                      cost=total.as_dict())


def decode(instance: Instance, max_pixel_value: float, max_pixels: int):
    if instance.pixels is not None:
        return decode_pixels(instance.pixels, max_pixel_value, max_pixels, instance.label)
    return decode_image(decode_base64(instance.base64, instance.label), max_pixels, instance.label)


def prediction(result: Result) -> dict:
    """classify's answer for one instance: its top-1 class, and the top classes as ``/v1/classify`` lists them."""
    top = result.data["top"]
    return {"index": top[0]["index"], "label": top[0]["label"], "probability": top[0]["probability"], "top": top}


def explanation(result: Result) -> dict:
    """An attribution for one instance: the raw map (the ``map`` artifact of ``/v1/<method>``) and what it explains."""
    data, values = result.data, np.asarray(result.arrays["map"], dtype=np.float32)
    return {"method": data["method"], "target": data.get("target"), "layer": data.get("layer"), "sign": data.get("sign"),
            "shape": list(values.shape), "map": values.tolist()}
