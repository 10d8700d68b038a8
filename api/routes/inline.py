"""Inline routes, one per registered inline method: ``POST /v1/{method}``.

Generated from :mod:`engine.registry`, so a newly registered method gets its
route, its typed request schema and its documentation with no code here.
"""

import asyncio
import time
from contextlib import contextmanager
from dataclasses import dataclass
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from PIL import Image
from pydantic.json_schema import models_json_schema

from api.deps import (
    CollectionResolverDep, FeatureCacheDep, ImageResolverDep, InlineLinksDep, InlinePoolDep, ModelSourceDep, SettingsDep, TenantDep,
)
from api.inline_batcher import InlineBatcher
from api.inline_links import parse_embed
from api.inline_progress import ClientGone, InlineProgress, InlineTimeLimit, until_done_or_gone
from api.inline_request import CollectionResolver, Form, InlineRequest, decode_inputs, parse, receive
from api.picture_refs import ImageResolver, decode_picture
from api.inline_response import JSON, Wanted, answer_json, negotiate, render, result_body
from api.problems import PROBLEM_JSON, Problem, picture_problem, problem_body
from api.schemas import InlineResult, InlineResults, ProblemDetails, json_request_model, multipart_schema
from engine.encoding import NPY, PNG
from engine.errors import EngineError
from engine.inspect.collection import FeatureCache
from engine.registry import Inputs, Method, all_methods, get_method
from engine.result import Result
from engine.models.zoo import ModelSource
from engine.run import Call, prepare, run_call, run_calls
from api.settings import Settings
from worker.uploads import UnknownImage

REF = "#/components/schemas/{model}"

USAGE = """
**Request**, either form:

- `multipart/form-data`: fields `model`, `params` (a JSON object, optional) and one file field per
  input ({inputs});
- `application/json`: `{{"model": ..., "params": {{...}}, "inputs": {{...}}}}`, each picture as
  `{{"base64": "..."}}` or `{{"image_id": "..."}}` (an image uploaded with `POST /v1/images`).

Several pictures (a list, a collection, or the file field repeated) for a method that batches
(classify and the gradient attributions) get one answer each, in order, computed in batches:
`{{"method", "model", "results": [{{"picture": {{"position", "id", "name"}}, ...the result | "problem"}}]}}`;
a picture that cannot be read or answered gets its own problem, the others their results.

Pictures may be PNG, JPEG, WEBP, GIF, BMP or TIFF; EXIF orientation is applied and transparency
is composited on white. Where the method has a `fit` param, it says how a picture is resized to the
model's input size: `stretch` (whole picture, aspect not kept), `crop` (centre crop) or `pad`
(letterbox in the dataset's mean colour).

**Answer**: JSON with `data` and the artifacts (PNG images, `.npy` arrays): those named by
`?embed=` (`all`, `none`, `main` or names such as `heatmap,overlay`; default: the service's
`inline_embed`, `none` unless configured) in base64, the others as links to
`GET /v1/results/{{id}}/{{name}}`, valid for a few minutes; `Accept: image/png` returns the main picture itself; `?artifact=<name>` returns one artifact
itself (`image/png` or `application/x-npy`). Errors are `application/problem+json` with a stable
`code`; 422 `over_inline_budget` when the call's estimated cost (network passes, output pixels,
bytes) is over the inline budget, and 503 `inline_time_limit` when it runs past the inline time
limit: submit a job instead; 429 (with `Retry-After`) when the inline pool is full (`busy`) or
the key already has its share of inline calls running or waiting (`inline_per_key_limit`): retry,
or submit a job.
"""


def inline_router() -> tuple[APIRouter, dict[str, dict]]:
    """The router and the schema components its OpenAPI document refers to."""
    router = APIRouter(prefix="/v1", tags=["inline"])
    methods = [method for method in all_methods() if method.inline]
    requests = {method.name: json_request_model(method) for method in methods}
    keyed = [(requests[method.name], "validation") for method in methods]
    keyed += [(method.params, "validation") for method in methods]
    keyed += [(InlineResult, "serialization"), (InlineResults, "serialization"), (ProblemDetails, "serialization")]
    refs, definitions = models_json_schema(keyed, ref_template=REF)
    answer_schema = {"oneOf": [refs[(InlineResult, "serialization")], refs[(InlineResults, "serialization")]]}
    responses = _responses(answer_schema, refs[(ProblemDetails, "serialization")])
    for method in methods:
        body = _request_body(method, refs[(requests[method.name], "validation")], refs[(method.params, "validation")])
        router.add_api_route(
            f"/{method.name}",
            _endpoint(method),
            methods=["POST"],
            name=method.name,
            operation_id=method.name,
            summary=method.summary,
            description=method.summary + "\n" + USAGE.format(inputs=_inputs_text(method)),
            response_class=Response,
            responses=responses,
            openapi_extra={"requestBody": body},
        )
    # Last, so that it only catches names no other POST route took.
    router.add_api_route("/{name}", _not_inline, methods=["POST"], include_in_schema=False)
    return router, definitions.get("$defs", {})


def _endpoint(method: Method):
    async def endpoint(
        request: Request,
        settings: SettingsDep,
        pool: InlinePoolDep,
        resolve: ImageResolverDep,
        collections: CollectionResolverDep,
        cache: FeatureCacheDep,
        links: InlineLinksDep,
        tenant: TenantDep,
        models: ModelSourceDep,
        artifact: Annotated[
            str | None, Query(description="return this artifact itself (PNG or .npy) instead of JSON")
        ] = None,
        embed: Annotated[
            str | None,
            Query(description="artifacts embedded in the JSON answer: all, none, main, or names (heatmap,overlay); "
                  "the others are linked", examples=["heatmap,overlay"]),
        ] = None,
    ) -> Response:
        start = time.perf_counter()
        try:
            wanted = negotiate(request.headers.get("accept"), artifact, parse_embed(embed or settings.inline_embed))
            body = await receive(request, method)
            progress = InlineProgress(settings.inline_time_limit_seconds)
            work = asyncio.ensure_future(pool.run(
                answer, method, body, wanted, settings, Caller(tenant, models), resolve, progress, collections, cache,
                lambda result: links.keep(result, tenant), pool.batcher, key=request.state.api_key,
            ))
            content, media_type, timings = await until_done_or_gone(request, work, progress)
        finally:
            request.app.state.metrics.inline.labels(method.name).observe(time.perf_counter() - start)
        return Response(content, media_type=media_type, headers={"Server-Timing": server_timing(timings)})

    endpoint.__name__ = method.name
    return endpoint


def answer(
    method: Method,
    body: Form | bytes,
    wanted: Wanted,
    settings: Settings,
    caller: "Caller",
    resolve: ImageResolver,
    progress: InlineProgress,
    collections: CollectionResolver | None = None,
    cache: FeatureCache | None = None,
    keep: Callable[[Result], str] | None = None,
    batcher: InlineBatcher | None = None,
) -> tuple[bytes, str, dict]:
    """Prepare (within the inline budget), decode, run (with the calls it can share a pass with) and encode,
    in the inline pool, off the event loop.

    Returns the body, its media type and the timings (ms).
    """
    request = parse(method, body, collections)
    if request.several:
        return answer_each(method, request, wanted, settings, caller, resolve, progress, keep)
    counts = {slot: len(uploads) for slot, uploads in request.uploads.items()}
    call = prepare(method.name, request.model, request.params, counts, caller.tenant, settings.inline_budget(), caller.models)  # before any decoding
    start = time.perf_counter()
    inputs = decode_inputs(request, settings.max_image_pixels, resolve)
    decode_ms = round((time.perf_counter() - start) * 1000, 3)
    result = run_inline(call, inputs, progress, settings, cache, batcher)
    timings = result.data["timings"]
    timings["decode_ms"] = decode_ms
    content, media_type = render(result, wanted, keep)
    return content, media_type, timings


def answer_each(
    method: Method,
    request: InlineRequest,
    wanted: Wanted,
    settings: Settings,
    caller: "Caller",
    resolve: ImageResolver,
    progress: InlineProgress,
    keep: Callable[[Result], str] | None = None,
) -> tuple[bytes, str, dict]:
    """Several pictures for a one-picture method: one answer each, in order, computed ``inline_max_batch`` at a
    time; a picture that cannot be read or answered gets its own problem, the others their results."""
    if wanted.media_type != JSON:
        raise Problem(406, "not_acceptable", "a request with several pictures answers JSON, one result per picture")
    (slot,) = [input_slot.name for input_slot in method.inputs]
    pictures = request.uploads.get(slot, [])
    if len(pictures) > settings.inline_max_pictures:
        raise Problem(422, "too_many_pictures", f"{len(pictures)} pictures in one request, over the limit of "
                      f"{settings.inline_max_pictures}: send fewer, or submit jobs", input=slot)
    call = prepare(method.name, request.model, request.params, {slot: 1}, caller.tenant, None, caller.models)
    settings.inline_budget().check(method.name, call.cost.for_pictures(len(pictures), settings.inline_max_batch))
    start = time.perf_counter()
    answers: dict[int, Result | Exception] = {}
    readable = []
    for position, given in enumerate(pictures):
        try:
            readable.append((position, decode_picture(given, settings.max_image_pixels, resolve)))
        except (Problem, EngineError, UnknownImage) as problem:
            answers[position] = problem
    decode_ms = round((time.perf_counter() - start) * 1000, 3)
    answers.update(run_in_batches(call, slot, readable, progress, settings))
    results = []
    for position, given in enumerate(pictures):
        outcome = answers[position]
        picture = {"position": position, "id": given.image_id, "name": given.name}
        if isinstance(outcome, Result):
            results.append({"picture": picture, **result_body(outcome, wanted.embed, keep)})
        else:
            problem = picture_problem(outcome)
            results.append({"picture": picture, "problem": problem_body(problem.status, problem.code, problem.detail, **problem.extra)})
    body = {"method": method.name, "model": call.spec.name, "results": results}
    timings = {"decode_ms": decode_ms, "total_ms": round((time.perf_counter() - start) * 1000, 3)}
    return answer_json(body), JSON, timings


def run_in_batches(call: Call, slot: str, pictures: list[tuple[int, Image.Image]], progress: InlineProgress,
                   settings: Settings) -> dict[int, Result | EngineError]:
    """One prepared call on each of ``pictures`` (position, picture), ``inline_max_batch`` at a time
    (:func:`engine.run.run_calls`): each position its own result or its own error."""
    answers: dict[int, Result | EngineError] = {}
    with inline_limits(call.method.name):
        for first in range(0, len(pictures), settings.inline_max_batch):
            progress(first, len(pictures))
            chunk = pictures[first : first + settings.inline_max_batch]
            outcomes = run_calls([(call, {slot: image}) for _position, image in chunk], settings.device)
            answers.update((position, outcome) for (position, _image), outcome in zip(chunk, outcomes))
    return answers


def run_inline(call: Call, inputs: Inputs, progress: InlineProgress, settings: Settings, cache: FeatureCache | None = None,
               batcher: InlineBatcher | None = None) -> Result:
    """:func:`engine.run.run_call` within a request (through ``batcher`` when given): past the inline time limit,
    or for a client gone, 503."""
    with inline_limits(call.method.name):
        if batcher is not None and call.method.batching is not None:
            return batcher.run(call, inputs, progress)
        return run_call(call, inputs, progress, settings.device, cache)


@contextmanager
def inline_limits(method_name: str):
    """Past the inline time limit, or for a client gone, the work stops with a 503."""
    try:
        yield
    except InlineTimeLimit as exc:
        raise Problem(503, "inline_time_limit", f"{exc}; submit it as a job (POST /v1/jobs with method={method_name!r})") from None
    except ClientGone as exc:
        raise Problem(503, "client_gone", str(exc)) from None


@dataclass(frozen=True)
class Caller:
    """Who asks: the tenant, and how its registered models are found."""

    tenant: str
    models: ModelSource


def server_timing(timings: dict) -> str:
    """``Server-Timing`` header (engine, decode, encode), readable by browsers' dev tools."""
    names = {"total_ms": "engine", "decode_ms": "decode", "encode_ms": "encode"}
    return ", ".join(f"{names[key]};dur={timings[key]}" for key in names if key in timings)


async def _not_inline(name: str) -> Response:
    method = get_method(name)  # UnknownMethod -> 404
    raise Problem(
        404,
        "method_not_inline",
        f"method {method.name!r} runs only as a job: POST /v1/jobs with method={method.name!r}",
    )


def _inputs_text(method: Method) -> str:
    return ", ".join(
        f"`{slot.name}`" + (f" repeated {slot.min_count}..{slot.max_count} times" if slot.many else "")
        for slot in method.inputs
    )


def _example(method: Method) -> dict:
    picture = {"image_id": "<image id from POST /v1/images>"}
    inputs = {slot.name: [picture] * slot.min_count if slot.many else picture for slot in method.inputs if not slot.optional}
    return {"model": "efficientnet_lite0", "params": {}, "inputs": inputs}


def _request_body(method: Method, json_ref: dict, params_ref: dict) -> dict:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": multipart_schema(method, params_ref)},
            "application/json": {"schema": json_ref, "example": _example(method)},
        },
    }


def _responses(result_ref: dict, problem_ref: dict) -> dict:
    binary = {"schema": {"type": "string", "format": "binary"}}
    problem = {"content": {PROBLEM_JSON: {"schema": problem_ref}}}
    return {
        200: {
            "description": "the result: JSON (one result each for several pictures), or one picture / array itself",
            "headers": {
                "Server-Timing": {
                    "description": "engine, decode and encode durations (ms)",
                    "schema": {"type": "string"},
                }
            },
            "content": {"application/json": {"schema": result_ref}, PNG: binary, NPY: binary},
        },
        "4XX": {"description": "bad input (problem details with a stable code)", **problem},
        503: {"description": "the call ran past the inline time limit: submit a job", **problem},
        429: {
            "description": "the inline pool is full, or this key has its share of it; retry after Retry-After seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            **problem,
        },
    }
