"""The one call path: prepare a call once (method, model, params, pictures, support, cost), then run it.

The API's inline routes, job submission and the worker all go through
:func:`prepare`, so a request is validated in one place with the same errors
everywhere: the method and its typed params, how many pictures each input
slot gets, the model as the calling tenant sees it (another tenant's model is
unknown, as in :func:`engine.models.zoo.find_spec`), whether the model can
run the method at the size the call needs, what only the model or the
pictures' count can tell of the params (:meth:`engine.params.Params.check_call`:
its layers, one weight per layer or picture), and the estimated cost against a
budget. Preparing loads no network: the cost reads the model's profile.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel

from engine.concurrency import GATE
from engine.cost import Budget, Cost
from engine.errors import EngineError, InputProblem, NonFiniteResult
from engine.models import ModelSpec, find_spec, load_model
from engine.models.zoo import ModelSource
from engine.models.profile import model_profile
from engine.models.support import check_supported
from engine.progress import Progress, no_progress
from engine.registry import Inputs, Method, get_method, parse_params
from engine.result import Result


@dataclass(frozen=True)
class Call:
    """A validated call: what will run, on which model, with which params, at what estimated cost."""

    method: Method
    spec: ModelSpec
    params: BaseModel
    cost: Cost


def prepare(
    method_name: str,
    model_name: str,
    params: dict | BaseModel | None,
    counts: Mapping[str, int],
    owner: str | None = None,
    budget: Budget | None = None,
    models: ModelSource | None = None,
) -> Call:
    """Validate a call of ``method_name`` on ``model_name`` for tenant ``owner``, with ``counts[slot]`` pictures per input;
    ``models`` finds registered models (the built-ins are always known).

    Raises the engine's errors (unknown method or model, invalid params, an
    input problem, an unsupported model or size, a cost over ``budget``).
    """
    method = get_method(method_name)
    parsed = parse_params(method, params)
    check_counts(method, counts)
    spec = find_spec(model_name, owner, models)
    profile = model_profile(spec)
    check_supported(spec, method, parsed.run_size(spec.input_size))
    parsed.check_call(profile, counts)
    cost = method.estimate(profile, parsed, sum(counts.values()))
    if budget is not None:
        budget.check(method.name, cost)
    return Call(method, spec, parsed, cost)


def check_counts(method: Method, counts: Mapping[str, int]) -> None:
    """Every required slot has its pictures, none too many or too few, and no unknown slot is named."""
    slots = {slot.name for slot in method.inputs}
    unknown = sorted(set(counts) - slots)
    if unknown:
        raise InputProblem("unknown_input", f"{method.name} takes no input {', '.join(map(repr, unknown))}; "
                           f"inputs: {', '.join(sorted(slots)) or 'none'}", unknown[0])
    for slot in method.inputs:
        count = counts.get(slot.name, 0)
        if count == 0 and not slot.optional:
            raise InputProblem("missing_input", f"{method.name} needs input {slot.name!r}: {slot.description}", slot.name)
        low, high = (slot.min_count, slot.max_count) if slot.many else (1, 1)
        if count and not low <= count <= high:
            wanted = f"{low}..{high} images" if slot.many else "one image"
            raise InputProblem("wrong_image_count", f"input {slot.name!r} takes {wanted}, got {count}", slot.name)


def picture_counts(inputs: Mapping[str, object]) -> dict[str, int]:
    """Pictures per slot of ``inputs`` (a list counts its items, anything else one)."""
    return {name: len(value) if isinstance(value, list) else 1 for name, value in inputs.items() if value is not None}


def shape_inputs(method: Method, inputs: Mapping[str, object]) -> dict:
    """``inputs`` with a single value given for a ``many`` slot taken as a list of one (other values as they are)."""
    many = {slot.name for slot in method.inputs if slot.many}
    return {name: [value] if name in many and not isinstance(value, list) else value for name, value in inputs.items()}


def run_call(call: Call, inputs: Inputs, progress: Progress = no_progress, device: str | None = None, cache=None) -> Result:
    """Load the (cached) model and run a prepared call on decoded pictures.

    ``cache`` (an :class:`engine.inspect.collection.FeatureCache`) reaches the
    methods that reuse derived data (``uses_cache``); others never see it.
    ``data["timings"]`` gets the wall time; ``data["model"]``/``data["method"]`` name what ran. A result
    holding NaN or infinities is refused (NonFiniteResult), inline and as a job alike.
    """
    method = call.method
    inputs = shape_inputs(method, inputs)
    model = load_model(call.spec, device)
    start = time.perf_counter()
    extra = (cache,) if method.uses_cache else ()
    with GATE.shared():  # calls run concurrently; only building a traced copy waits for them
        result = method.run(model, inputs, call.params, progress, *extra)
    return _finished(call, result, start)


def run_calls(calls: list[tuple[Call, Inputs]], device: str | None = None) -> list[Result | EngineError]:
    """Run prepared calls of one method on one model, in order; those the method's batching lets share a
    pass run as one batch (:class:`engine.registry.Batching`), the others alone.

    Each call gets its own answer or its own error, as if it had run alone: a refused result (NaN) or a
    bad target fails that call only; a batch that fails as a whole is retried call by call.
    """
    if len({(call.method.name, call.spec.identity) for call, _inputs in calls}) > 1:
        raise ValueError("run_calls takes calls of one method on one model")
    answers: list[Result | EngineError | None] = [None] * len(calls)
    batching = calls[0][0].method.batching if calls else None
    groups: dict = {}
    for position, (call, _inputs) in enumerate(calls):
        key = batching.key(call.params) if batching is not None else None
        groups.setdefault(("alone", position) if key is None else ("batch", key), []).append(position)
    model = load_model(calls[0][0].spec, device) if calls else None
    for positions in groups.values():
        if len(positions) > 1:
            start = time.perf_counter()
            try:
                with GATE.shared():
                    results = batching.run(model, [(shape_inputs(calls[p][0].method, calls[p][1]), calls[p][0].params) for p in positions])
            except EngineError:
                results = None  # one call's problem (an unknown class...): each call alone finds its own
            if results is not None:
                for p, result in zip(positions, results):
                    answers[p] = _answer(_finished, calls[p][0], result, start)
                continue
        for p in positions:
            answers[p] = _answer(run_call, calls[p][0], calls[p][1], device=device)
    return answers


def _answer(compute, *args, **kwargs) -> Result | EngineError:
    try:
        return compute(*args, **kwargs)
    except EngineError as error:
        return error


def _finished(call: Call, result: Result, start: float) -> Result:
    """A method's result checked (no NaN) and stamped with what ran and how long it took."""
    method = call.method
    where = result.first_non_finite()
    if where is not None:
        raise NonFiniteResult(f"{method.name} on model {call.spec.name!r} produced NaN or infinite numbers (first at {where}): "
                              "the model's outputs are not finite for this input, or the params made the computation diverge")
    result.data["method"] = method.name
    result.data["model"] = call.spec.name
    result.data.setdefault("params", call.params.model_dump(mode="json"))
    result.data.setdefault("timings", {})["total_ms"] = round((time.perf_counter() - start) * 1000, 3)
    return result


def run_method(
    name: str,
    model_name: str,
    inputs: Inputs,
    params: dict | BaseModel | None = None,
    progress: Progress = no_progress,
    device: str | None = None,
    cache=None,
    owner: str | None = None,
    models: ModelSource | None = None,
) -> Result:
    """Prepare and run in one step, with no budget (the engine's own callers: tests, benchmarks)."""
    call = prepare(name, model_name, params, picture_counts(inputs), owner, models=models)
    return run_call(call, inputs, progress, device, cache)
