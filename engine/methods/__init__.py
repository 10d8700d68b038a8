"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
from engine.attribution import (  # noqa: F401
    gradcam,
    guided_backprop,
    integrated_gradients,
    occlusion,
    saliency,
    segmentation,
    smoothgrad,
)
