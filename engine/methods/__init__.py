"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
from engine.inspect import activations, embedding, filters, max_patches, neighbours  # noqa: F401
from engine.attribution import (  # noqa: F401
    gradcam,
    guided_backprop,
    integrated_gradients,
    occlusion,
    saliency,
    segmentation,
    smoothgrad,
)
from engine.attribution.evaluation import method as evaluate_attribution  # noqa: F401
from engine.fool import fooling_image, universal, untargeted  # noqa: F401
from engine.synthesis import class_visualization, deepdream, fast_style, inversion, style_transfer, texture  # noqa: F401
