"""What a call may name of a model, checked one way whether the model is loaded (ConvLensModel) or only described
(ModelProfile, before anything runs): a class, a layer with a feature map, a channel of a layer, a neuron of its map.

The methods check their targets with these at run time, and their params' ``check_call`` with the same functions
at submission, so a bad name is refused before a job is queued, with the message it would have failed with.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from engine.errors import EngineError, InvalidParams, UnknownChannel, UnknownClass

if TYPE_CHECKING:
    from engine.models.wrapper import LayerInfo


def class_index(model_name: str, labels: Sequence[str] | None, target: int | str) -> int:
    """Resolve a class given as an index or an (exact, case-insensitive) label of ``labels`` (None: no classifier)."""
    if labels is None:
        raise UnknownClass(f"model {model_name!r} has no classifier head, so it has no classes")
    if isinstance(target, bool):
        raise UnknownClass(f"class must be an index or a label, not {target!r}")
    if isinstance(target, int) or (isinstance(target, str) and target.strip().isdigit()):
        index = int(target)
        if not 0 <= index < len(labels):
            raise UnknownClass(f"class index {index} is out of range 0..{len(labels) - 1}")
        return index
    wanted = str(target).strip().lower()
    for index, label in enumerate(labels):
        if label.lower() == wanted:
            return index
    raise UnknownClass(f"model {model_name!r} has no class labelled {target!r}")


def named_layer(model, layer: str, field: str = "layer", size: tuple[int, int] | None = None) -> "LayerInfo":
    """The info of ``layer`` (the param ``field``) of a loaded model or a profile; UnknownLayer naming the param."""
    with naming(field):
        return model.layer_info(layer, size)


def conv_info(model, layer: str, field: str = "layer") -> "LayerInfo":
    """The info of convolution ``layer`` (the param ``field``) of a loaded model or a profile: UnknownLayer for a layer
    the model lacks, InvalidParams (naming a few convolutions) for one that is not a convolution."""
    info = named_layer(model, layer, field)
    if info.weight is None:
        convs = [each.name for each in model.catalogue() if each.weight]
        with naming(field):
            raise InvalidParams(f"layer {layer!r} is a {info.type}, not a convolution; e.g. {', '.join(convs[:6])}")
    return info


def drawn_layer(model, layer: str | None, size: tuple[int, int] | None = None) -> tuple[str, "LayerInfo"]:
    """The layer a method draws the maps of (``layer``, else the model's default layer or first convolution) and its
    info, refused (params.layer named) unless it outputs feature maps."""
    layer = layer or model.spec.default_layer or model.spec.first_conv
    with naming("layer"):
        return layer, feature_map_info(model.layer_info(layer, size))


def check_channel(info: "LayerInfo", channel: int) -> None:
    """UnknownChannel unless ``channel`` is one of the layer's channels."""
    if not 0 <= channel < info.channels:
        raise UnknownChannel(f"layer {info.name!r} has {info.channels} channels (0..{info.channels - 1}); got {channel}")


def feature_map_info(info: "LayerInfo") -> "LayerInfo":
    """``info`` when its layer outputs feature maps (C, H, W); InvalidParams for a vector."""
    if len(info.shape) != 3:
        raise InvalidParams(f"layer {info.name!r} outputs a vector {info.shape}, not feature maps; pick a convolutional layer")
    return info


def check_neuron(info: "LayerInfo", neuron: Sequence[int] | None, spatial: bool = True) -> tuple[int, int] | None:
    """The neuron (y, x) of the layer's map as ints; InvalidParams for a vector layer, or (``spatial``: the info's
    height and width are those of the size the call runs at) for a position outside the map."""
    if neuron is None:
        return None
    if len(info.shape) != 3:
        raise InvalidParams(f"layer {info.name!r} outputs a vector; a neuron (y, x) needs a feature map (or a channel target)")
    y, x = neuron
    height, width = info.shape[1:]
    if spatial and not (0 <= y < height and 0 <= x < width):
        raise InvalidParams(f"neuron [{y}, {x}] is outside layer {info.name!r}'s {height}x{width} map at this size")
    return int(y), int(x)


@contextmanager
def naming(field: str) -> Iterator[None]:
    """Prefix an engine error raised inside with the param it is about (``params.<field>: ...``), same error class."""
    try:
        yield
    except EngineError as exc:
        exc.message = f"params.{field}: {exc.message}"
        exc.args = (exc.message,)
        raise
