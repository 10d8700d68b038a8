"""One registry of methods: the API's inline routes, job validation and the
worker's task all come from here.

A method is a name, a typed params model, the image inputs it needs, flags
for where it may run, and ``run(model, inputs, params, progress) -> Result``.
"""

from dataclasses import dataclass
from typing import Any, Callable, Literal

from PIL import Image
from pydantic import BaseModel

from engine.errors import UnknownMethod
from engine.models.wrapper import ConvLensModel
from engine.progress import Progress
from engine.result import Result

Inputs = dict[str, Image.Image | list[Image.Image]]
RunFn = Callable[[ConvLensModel, Inputs, Any, Progress], Result]


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
    category: Literal["inspect", "attribute", "synthesise", "fool"]
    params: type[BaseModel]
    run: RunFn
    inputs: tuple[InputSlot, ...] = (InputSlot("image", "the picture to explain"),)
    inline: bool = True  # may answer within the HTTP request
    needs_classifier: bool = False  # refuses models without a classifier head
    queue: Literal["gpu", "cpu"] = "gpu"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "summary": self.summary,
            "category": self.category,
            "inline": self.inline,
            "needs_classifier": self.needs_classifier,
            "inputs": [slot.as_dict() for slot in self.inputs],
            "params_schema": self.params.model_json_schema(),
        }


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    _METHODS[method.name] = method
    return method


def all_methods() -> list[Method]:
    _ensure_builtins()
    return list(_METHODS.values())


def get_method(name: str) -> Method:
    _ensure_builtins()
    if name not in _METHODS:
        raise UnknownMethod(f"unknown method {name!r}; available: {', '.join(sorted(_METHODS))}")
    return _METHODS[name]


def _ensure_builtins() -> None:
    import engine.methods  # noqa: F401  (registers every built-in method)
