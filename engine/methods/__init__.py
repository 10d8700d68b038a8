"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
from engine.attribution import guided_backprop, occlusion, saliency  # noqa: F401
