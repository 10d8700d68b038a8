"""The params methods share, each defined once: its name, type, units, bounds and description.

``docs/vocabulary.md`` lists the names; a method with one of these concepts
takes its field from here, a base class for those that never vary (``seed``,
``fit``, ``target_class``) or a field function for those whose default or
range does (``steps``, ``step_size``, ``batch_size``...).
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from engine.imaging import Fit
from engine.models.units import naming

if TYPE_CHECKING:
    from engine.models.profile import ModelProfile

SEED_MAX = 2**31 - 1
# Where a setting is shown (the schema's "group"; unmarked: the method's own settings): what the call explains or
# shows, the picture the network sees, quality against speed, or folded away as rarely changed.
Group = Literal["target", "picture", "quality", "advanced"]
GREY_LEVELS = "8-bit grey levels (1/255 of the [0, 1] pixel range)"


def group(name: Group) -> dict:
    """The schema extra filing a field under ``name`` (``Field(..., json_schema_extra=group("picture"))``)."""
    return {"group": name}


RARE = group("advanced")  # a setting few calls change: folded away on the web page


class Params(BaseModel):
    """Every method's params: unknown names are refused, never silently ignored."""

    model_config = ConfigDict(extra="forbid")

    def run_size(self, native: tuple[int, int]) -> tuple[int, int]:
        """The (height, width) the network runs at (the largest, for a method that runs at several)."""
        return native

    def check_call(self, model: "ModelProfile", counts: Mapping[str, int]) -> None:
        """Refuse (engine errors) what only the model or the pictures' count can tell is wrong, before anything runs:
        a layer the model lacks, one weight per layer or per picture that counts wrong. Reads the model's profile only."""


class Sized(Params):
    """A method that fits its pictures to a square of ``size`` (field defined by each, default possibly the model's)."""

    size: int | None

    def run_size(self, native: tuple[int, int]) -> tuple[int, int]:
        return (self.size, self.size) if self.size else native


class AspectKept(Params):
    """A method that keeps its picture's aspect, its longer side ``max_side``."""

    max_side: int

    def run_size(self, native: tuple[int, int]) -> tuple[int, int]:
        return self.max_side, self.max_side


class Seeded(Params):
    seed: int = Field(0, ge=0, le=SEED_MAX, description="random seed: the same seed gives the same answer",
                      json_schema_extra=RARE)


class Fitted(Params):
    fit: Fit | None = Field(
        None, description="how a picture is fitted to the square the network sees: stretch, crop (centre) or pad (letterbox in "
        "the model's mean color); default: the model's own evaluation (eval_fit in GET /v1/models/{name})",
        json_schema_extra=group("picture"),
    )


class ClassTargeted(Params):
    target_class: int | str | None = Field(
        None, description="the class, as an index or a label (case-insensitive); default: the model's top-1 class for the picture",
        json_schema_extra=group("target"),
    )

    def check_call(self, model: "ModelProfile", counts: Mapping[str, int]) -> None:
        super().check_call(model, counts)
        if self.target_class is not None:
            with naming("target_class"):
                model.class_index(self.target_class)


def steps(default: int, low: int = 1, high: int = 2000, what: str = "optimizer steps") -> Any:
    return Field(default, ge=low, le=high, description=what, json_schema_extra=group("quality"))


def step_size(default: float, what: str = "change of a pixel per step") -> Any:
    return Field(default, gt=0, le=64, description=f"{what}, in {GREY_LEVELS}")


def eps(default: int) -> Any:
    return Field(default, ge=1, le=64, description=f"largest change of any pixel, in {GREY_LEVELS}")


def lr(default: float, what: str) -> Any:
    return Field(default, gt=0, le=10.0, description=f"learning rate of the optimizer on {what} (not pixels)",
                 json_schema_extra=RARE)


def batch_size(default: int, high: int = 256, what: str = "pictures per pass") -> Any:
    return Field(default, ge=1, le=high, description=f"{what} (speed and memory only; never changes the answer)",
                 json_schema_extra=RARE)


def preview_every(default: int) -> Any:
    return Field(default, ge=0, le=100_000, description="steps between two previews of a running job (0: none)",
                 json_schema_extra=RARE)


def size(default: int | None, low: int = 32, high: int = 1024, what: str = "") -> Any:
    fallback = "; default: the model's input size" if default is None else ""
    return Field(default, ge=low, le=high, description=f"side, in pixels, of the square the network sees{what}{fallback}",
                 json_schema_extra=group("picture"))


def max_side(default: int, low: int = 32, high: int = 1024, what: str = "the picture") -> Any:
    return Field(default, ge=low, le=high, description=f"longer side of {what} in pixels (its aspect is kept)",
                 json_schema_extra=group("picture"))


def top_k(default: int | None, high: int, what: str) -> Any:
    return Field(default, ge=1, le=high, description=f"how many {what}")


def channels(high: int, what: str) -> Any:
    """An optional list of channel indices: None draws the default ones, an empty list is refused (nothing to draw)."""
    return Field(None, min_length=1, max_length=high, description=what)


def tile_size(default: int, low: int = 1, high: int = 256, what: str = "each drawn tile") -> Any:
    return Field(default, ge=low, le=high, description=f"side of {what}, in pixels", json_schema_extra=RARE)


def _not_all_zero(weights: list[float]) -> list[float]:
    if not any(w > 0 for w in weights):
        raise ValueError(f"at least one weight must be positive; got {weights}")
    return weights


# Relative weights (of layers, of pictures): finite, non-negative, at least one positive, at least one given.
Weights = Annotated[list[Annotated[float, Field(ge=0, allow_inf_nan=False)]], AfterValidator(_not_all_zero)]


def weights(high: int, what: str, **extra: Any) -> Any:
    """An optional list of :data:`Weights`: None takes the method's default, an empty list is refused."""
    return Field(None, min_length=1, max_length=high, description=what, **extra)
