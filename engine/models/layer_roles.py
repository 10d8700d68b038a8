"""Which layer plays which part by default: content and style (Gatys et al. 2016), the dream layer, diversity.

A built-in model names its own (the layers its methods were tuned on). Any
other model gets them from its layer catalogue: its feature maps grouped into
stages by resolution (only layers whose output has a convolution's
(C, H, W) layout, so channel-last tensors between permutes never qualify),
each stage represented by its first activation, as Gatys et al. take the
first ReLU of each VGG block: style reads the first five stages, content the
second activation of the fourth (VGG's ``relu4_2``), the dream and diversity
layers the middle and the next-to-last stage.
"""

from typing import TYPE_CHECKING

from engine.errors import InvalidParams
from engine.models.wrapper import ConvLensModel, LayerInfo
from engine.models.zoo import ModelSpec

if TYPE_CHECKING:
    from engine.models.profile import ModelProfile

ROLES = ("content", "style", "dream", "diversity")
ACTIVATIONS = {"ReLU", "ReLU6", "LeakyReLU", "ELU", "GELU", "SiLU", "Hardswish", "Mish", "Hardtanh"}


def role_layers(model: "ConvLensModel | ModelProfile", role: str) -> tuple[str, ...]:
    """The default layers of ``role`` for ``model`` or its profile (InvalidParams when it has no feature maps to choose from)."""
    found = default_layers(model.spec, model.catalogue(), role)
    if not found:
        raise InvalidParams(f"model {model.spec.name!r} has no convolutional feature maps to pick a {role} layer from; name one")
    return found


def all_roles(spec: ModelSpec, catalogue: tuple[LayerInfo, ...]) -> dict[str, list[str]]:
    """Every role's default layers (an empty list where the model has none), as ``GET /v1/models/{name}`` shows them."""
    return {role: list(default_layers(spec, catalogue, role)) for role in ROLES}


def default_layers(spec: ModelSpec, catalogue: tuple[LayerInfo, ...], role: str) -> tuple[str, ...]:
    named = spec.layer_roles.get(role)
    if named:
        return tuple(named)
    stages = feature_stages(catalogue)
    if not stages:
        return ()
    firsts = [_activations(stage)[0] if _activations(stage) else stage[0] for stage in stages]
    if role == "style":
        return tuple(info.name for info in firsts[:5])
    if role == "content":
        stage = stages[min(3, len(stages) - 1)]
        active = _activations(stage)
        return ((active[1] if len(active) > 1 else stage[-1]).name,)
    index = len(stages) // 2 if role == "dream" else max(0, len(stages) - 2)
    return (stages[index][-1].name,)


def feature_stages(catalogue: tuple[LayerInfo, ...]) -> list[list[LayerInfo]]:
    """Layers with a convolution's output layout, grouped by resolution in the order they run (1x1 maps left out)."""
    conv_shapes = {info.shape for info in catalogue if info.type == "Conv2d"}
    stages: dict[tuple[int, ...], list[LayerInfo]] = {}
    for info in catalogue:
        if len(info.shape) == 3 and info.shape in conv_shapes and info.shape[1] * info.shape[2] > 1:
            stages.setdefault(info.shape[1:], []).append(info)
    return list(stages.values())


def _activations(stage: list[LayerInfo]) -> list[LayerInfo]:
    return [info for info in stage if info.type in ACTIVATIONS]
