"""Which methods a model can run faithfully, and why not the others.

A method declares the capabilities it requires (:mod:`engine.capabilities`);
a model lacks some, with the reason measured when it was vetted (or, for a
built-in, a missing classifier head). A call is also refused when it would
run the model at a size it was not measured to accept. Nothing is listed as
supported that then fails for either reason.
"""

from typing import TYPE_CHECKING

from engine.capabilities import DESCRIPTIONS
from engine.errors import UnsupportedModel

if TYPE_CHECKING:
    from engine.models.zoo import ModelSpec
    from engine.registry import Method


def unsupported_reason(spec: "ModelSpec", method: "Method") -> str | None:
    """Why ``method`` cannot run on ``spec``'s model, or None when it can."""
    for capability in method.requires:
        missing = spec.missing(capability)
        if missing is not None:
            return f"{method.name} needs a model that {DESCRIPTIONS[capability]}: {missing}"
    return None


def size_refusal(spec: "ModelSpec", size: tuple[int, int]) -> str | None:
    """Why ``spec``'s model cannot run at ``size`` (height, width), or None when it can."""
    sizes = spec.sizes
    if sizes is None or sizes.accepts(size):
        return None
    if sizes.fixed:
        return f"model {spec.name!r} runs only at its native size {_hw(sizes.native)}; this call would run it at {_hw(size)}"
    return (f"model {spec.name!r} was measured to run at sizes from {_hw(sizes.min)} to {_hw(sizes.max)}; "
            f"this call would run it at {_hw(size)}")


def check_supported(spec: "ModelSpec", method: "Method", size: tuple[int, int]) -> None:
    reason = unsupported_reason(spec, method) or size_refusal(spec, size)
    if reason is not None:
        raise UnsupportedModel(reason)


def method_support(spec: "ModelSpec", methods: list["Method"]) -> list[dict]:
    out = []
    for method in methods:
        reason = unsupported_reason(spec, method)
        out.append({"method": method.name, "supported": reason is None, **({"reason": reason} if reason else {})})
    return out


def _hw(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
