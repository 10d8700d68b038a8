"""Which methods a model can run faithfully, and why not the others.

Two things rule a method out: a model without a classifier head for the
methods that explain a class, and TorchScript. A scripted module is one opaque
program: ``torch.fx`` cannot trace it (so no ReLU rules, folding or
receptive-field occlusion) and hooks cannot reach its layers (so no layer
activations, Grad-CAM, filters or layer objectives). Only the methods that
need nothing but the pixels-to-logits function and its input gradient run on
it; every other method, including any added later, is refused rather than
answering with a silently different map.
"""

from typing import TYPE_CHECKING

from engine.errors import UnsupportedModel

if TYPE_CHECKING:
    from engine.models.zoo import ModelSpec
    from engine.registry import Method

TORCHSCRIPT_METHODS = frozenset(
    {"classify", "saliency", "smoothgrad", "integrated_gradients", "occlusion", "fooling_image", "adversarial_untargeted"}
)


def unsupported_reason(spec: "ModelSpec", method: "Method") -> str | None:
    """Why ``method`` cannot run on ``spec``'s model, or None when it can."""
    if method.needs_classifier and spec.labels is None:
        return f"{method.name} explains a class; model {spec.name!r} has no classifier head"
    if spec.format == "torchscript" and method.name not in TORCHSCRIPT_METHODS:
        return (
            f"{method.name} needs the network's layers or traced graph, which a TorchScript module hides; "
            "register the model as ONNX or torch.export to use it"
        )
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
