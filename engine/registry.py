"""One registry of methods: the API's inline routes, job validation and the
worker's task all come from here.

A method is a name, a typed params model, the image inputs it needs, flags
for where it may run, the model capabilities it requires
(:mod:`engine.capabilities`), ``run(model, inputs, params, progress) -> Result`` and
``cost(model, params, images) -> Cost`` (what a call will cost, stated
before it runs, from its typed params); a module declares one with the
:func:`method` decorator on its run function.
"""

from dataclasses import dataclass
from collections.abc import Hashable
from typing import Any, Callable, Literal

from PIL import Image
from pydantic import BaseModel, ValidationError

from engine.cost import Cost
from engine.errors import InvalidParams, UnknownMethod
from engine.validation import describe_errors
from engine.named_registry import Registry
from engine.params import Params
from engine.models.profile import ModelProfile
from engine.models.wrapper import ConvLensModel
from engine.progress import Progress
from engine.result import Result

Inputs = dict[str, Image.Image | list[Image.Image]]
RunFn = Callable[[ConvLensModel, Inputs, Any, Progress], Result]
CostFn = Callable[[ModelProfile, Any, int], Cost]  # (model, parsed params, number of input pictures)
BatchRun = Callable[..., list[Result]]  # (model, [(inputs, params)], progress=no_progress) -> a result per call


@dataclass(frozen=True)
class Batching:
    """How a method answers several calls in one pass through the network.

    Calls whose params give equal ``key``s may share a batch (a key of None: the
    call runs alone); ``run`` answers each call of a batch, in order, exactly as
    the method's own run would answer it alone.
    """

    key: Callable[[Any], Hashable | None]
    run: BatchRun


@dataclass(frozen=True)
class InputSlot:
    """One named image input. ``many`` slots take a list of ``min_count..max_count`` images."""

    name: str
    description: str = ""
    many: bool = False
    min_count: int = 1
    max_count: int = 1
    optional: bool = False

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "many": self.many,
            "min_count": self.min_count,
            "max_count": self.max_count,
            "optional": self.optional,
        }


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    category: Literal["inspect", "attribute", "synthesize", "fool"]
    params: type[BaseModel]
    run: RunFn
    cost: CostFn  # what a call will cost, from its typed params (engine.cost)
    inputs: tuple[InputSlot, ...] = (InputSlot("image", "the picture to explain"),)
    inline: bool = True  # may answer within the HTTP request
    requires: tuple[str, ...] = ()  # model capabilities (engine.capabilities) it cannot run without
    queue: Literal["gpu", "cpu"] = "gpu"
    uses_cache: bool = False  # run takes a fifth argument: the FeatureCache for derived data (or None)
    evaluable: bool = False  # makes a per-pixel map of a class that evaluate_attribution can sanity-check
    compare: bool = False  # shown in the web page's comparison view by default
    batching: Batching | None = None  # how several calls share one pass, if they can

    def __post_init__(self):
        if not issubclass(self.params, Params):
            raise TypeError(f"method {self.name!r}: its params must subclass engine.params.Params (shared names and units)")

    @property
    def takes_several(self) -> bool:
        """A method of one picture whose calls share a pass also takes several pictures in one request."""
        return self.batching is not None and len(self.inputs) == 1 and not self.inputs[0].many

    def estimate(self, model: ModelProfile, params: BaseModel, images: int) -> Cost:
        """What running with ``params`` on ``images`` input pictures will cost (nothing is run)."""
        return self.cost(model, params, images)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "category": self.category,
            "inline": self.inline,
            "requires": list(self.requires),
            "uses_cache": self.uses_cache,
            "evaluable": self.evaluable,
            "compare": self.compare,
            "batched": self.batching is not None,
            "inputs": [slot.as_dict() for slot in self.inputs],
            "params_schema": self.params.model_json_schema(),
        }


def _import_builtins() -> None:
    import engine.methods  # noqa: F401  (registers every built-in method)


METHODS: Registry[Method] = Registry("method", UnknownMethod, _import_builtins)


def method(name: str, **fields) -> Callable[[RunFn], RunFn]:
    """Register the decorated ``run`` function as method ``name`` (fields as in :class:`Method`)."""

    def decorate(run: RunFn) -> RunFn:
        METHODS.add(name, Method(name=name, run=run, **fields))
        return run

    return decorate


def all_methods() -> list[Method]:
    return METHODS.all()


def get_method(name: str) -> Method:
    return METHODS.get(name)


def evaluable_methods() -> list[str]:
    """The methods evaluate_attribution can evaluate, as declared by each (``evaluable``)."""
    return [method.name for method in all_methods() if method.evaluable]


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
        raise InvalidParams(f"invalid params for {method.name}: {describe_errors(exc, 'params')}") from exc
