"""Attribution: which pixels of one picture a network's decision (or one of its
units) depends on.

Gradient methods (saliency, guided backprop, deconvnet, SmoothGrad,
integrated gradients, Grad-CAM) and perturbation methods (occlusion) share the
target resolution in :mod:`~engine.attribution.targets` and the one result
shape drawn by :mod:`~engine.attribution.render`.
"""
