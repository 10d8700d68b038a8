"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
from engine.inspect import activations, embedding, filters, max_patches, neighbours  # noqa: F401
from engine.fool import fooling_image, universal, untargeted  # noqa: F401
from engine.synthesis import class_visualization, deepdream, fast_style, inversion, style_transfer, texture  # noqa: F401
