"""What a method call will cost, stated before it runs, and the budgets it is checked against.

A :class:`Cost` counts passes through the network (one forward or one backward
pass of one picture at the size the method runs at), output pixels (every
picture the answer carries) and bytes (the largest of the working memory and
the answer's arrays and pictures). Estimates come from the params and the
model's layer catalogue at its native size, scaled by area for other sizes
(feature maps scale with the picture's area up to rounding), so estimating
runs nothing. Estimates read a :class:`engine.models.profile.ModelProfile`, never a loaded
network. The API compares a call's cost with the inline budget, the job
service with the job caps; either refuses with a message naming what to change.
"""

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.models.profile import ModelProfile

FLOAT = 4  # bytes of one float32 value


@dataclass(frozen=True)
class Cost:
    passes: int
    pixels: int
    bytes: int
    hint: str = ""  # which params make the call cheaper

    def as_dict(self) -> dict[str, int]:
        return {"passes": self.passes, "pixels": self.pixels, "bytes": self.bytes}

    def for_pictures(self, count: int, batch: int) -> "Cost":
        """The cost of one picture's call, made for ``count`` pictures run ``batch`` at a time."""
        return Cost(self.passes * count, self.pixels * count, self.bytes * min(count, batch), self.hint)


class OverBudget(EngineError):
    """A call whose estimated cost exceeds the inline budget (``over_inline_budget``) or the job caps (``over_job_caps``)."""

    def __init__(self, code: str, message: str, cost: Cost):
        super().__init__(message)
        self.code = code
        self.extra = {"cost": cost.as_dict()}


@dataclass(frozen=True)
class Budget:
    """What one call may cost: ``inline`` (answered within the request) or ``job`` (the hard caps of any job)."""

    kind: Literal["inline", "job"]
    passes: int
    pixels: int
    bytes: int

    def excess(self, cost: Cost) -> list[str]:
        """What ``cost`` exceeds, in words (empty when it fits)."""
        over = []
        if cost.passes > self.passes:
            over.append(f"{cost.passes:,} network passes (limit {self.passes:,})")
        if cost.pixels > self.pixels:
            over.append(f"{cost.pixels:,} output pixels (limit {self.pixels:,})")
        if cost.bytes > self.bytes:
            over.append(f"{_size(cost.bytes)} of memory or output (limit {_size(self.bytes)})")
        return over

    def check(self, method_name: str, cost: Cost) -> None:
        """Raise OverBudget naming what to change when ``cost`` does not fit."""
        over = self.excess(cost)
        if not over:
            return
        needs = f"{method_name} would need {' and '.join(over)}"
        if self.kind == "inline":
            raise OverBudget("over_inline_budget", f"{needs}, over the inline budget; submit it as a job "
                             f"(POST /v1/jobs with method={method_name!r}){_hint(cost)}", cost)
        raise OverBudget("over_job_caps", f"{needs}, over what even a job may use{_hint(cost)}", cost)


def _hint(cost: Cost) -> str:
    return f", or {cost.hint}" if cost.hint else ""


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


# -- what the network needs ---------------------------------------------------------


def _native_activations(model: "ModelProfile") -> tuple[int, int]:
    """(sum over leaf layers, largest one) of float32 output bytes for one picture at the native size."""
    sizes = [math.prod(info.shape) * FLOAT for info in model.catalogue() if info.leaf] or [0]
    return sum(sizes), max(sizes)


def area_ratio(model: "ModelProfile", size: tuple[int, int] | None) -> float:
    height, width = model.input_size
    return 1.0 if size is None else size[0] * size[1] / (height * width)


def saved_for_backward(model: "ModelProfile", size: tuple[int, int] | None = None) -> int:
    """Bytes a backward pass keeps for one picture: every leaf layer's output."""
    return int(_native_activations(model)[0] * area_ratio(model, size))


def forward_peak(model: "ModelProfile", size: tuple[int, int] | None = None) -> int:
    """Bytes alive at once in a gradient-free forward pass of one picture: the largest layer's input and output."""
    return int(2 * _native_activations(model)[1] * area_ratio(model, size))


# -- the shapes of cost the methods have ---------------------------------------------------


def forward_cost(model: "ModelProfile", size: tuple[int, int], pictures: int, batch: int, hint: str) -> Cost:
    """One forward pass per picture, gradient-free; a batch of the largest activations alive at once."""
    return Cost(pictures, 3 * size[0] * size[1], forward_peak(model, size) * min(batch, max(pictures, 1)), hint)


def gradient_cost(model: "ModelProfile", size: tuple[int, int], passes: int, batch: int, hint: str, pixels: int | None = None,
                  extra_bytes: int = 0) -> Cost:
    """``passes`` forward and backward passes; a batch's activations kept for its backward pass."""
    return Cost(passes, 3 * size[0] * size[1] if pixels is None else pixels,
                saved_for_backward(model, size) * batch + extra_bytes, hint)
