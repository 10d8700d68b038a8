"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
from engine.fool import fooling_image, universal, untargeted  # noqa: F401
from engine.synthesis import class_visualization, deepdream  # noqa: F401
