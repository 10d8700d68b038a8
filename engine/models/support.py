"""Which methods a model can run faithfully, and why not the others.

A model without a classifier head cannot run the methods that explain a class.
"""

from typing import TYPE_CHECKING

from engine.errors import UnsupportedModel

if TYPE_CHECKING:
    from engine.models.zoo import ModelSpec
    from engine.registry import Method

def unsupported_reason(spec: "ModelSpec", method: "Method") -> str | None:
    """Why ``method`` cannot run on ``spec``'s model, or None when it can."""
    if method.needs_classifier and spec.labels is None:
        return f"{method.name} explains a class; model {spec.name!r} has no classifier head"
    return None


def check_supported(spec: "ModelSpec", method: "Method") -> None:
    reason = unsupported_reason(spec, method)
    if reason is not None:
        raise UnsupportedModel(reason)


def method_support(spec: "ModelSpec", methods: list["Method"]) -> list[dict]:
    out = []
    for method in methods:
        reason = unsupported_reason(spec, method)
        out.append({"method": method.name, "supported": reason is None, **({"reason": reason} if reason else {})})
    return out
