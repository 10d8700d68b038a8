"""Model zoo: small registered factories plus the wrapper every method receives."""

from engine.models.wrapper import ConvLensModel, LayerInfo, Preprocessing
from engine.models.zoo import ModelSpec, builtin_specs, find_spec, load_model, register_model

__all__ = [
    "ConvLensModel",
    "LayerInfo",
    "ModelSpec",
    "Preprocessing",
    "builtin_specs",
    "find_spec",
    "load_model",
    "register_model",
]
