"""Saliency-seeded GrabCut segmentation (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034, sec. 3.2).

The saliency map, smoothed by a Gaussian (raw gradient maps are speckled, and
isolated seed pixels give GrabCut a fragmented object), seeds GrabCut (Rother
et al. 2004): pixels above the ``foreground_percentile`` of saliency are fixed
foreground, pixels below the ``background_percentile`` fixed background, the
rest probably foreground; GrabCut's colour models and graph cut decide them. Returns the object
mask and the picture with the background blacked out (the main image).
"""

import cv2
import numpy as np
from PIL import Image
from pydantic import Field, model_validator

from engine.capabilities import CLASSIFIER
from engine.attribution.gradients import class_gradient
from engine import params as p
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result, max_abs_over_channels
from engine.attribution.targets import class_target, requested_class
from engine.attribution.timing import Stopwatch
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import method
from engine.result import Result


class SegmentationParams(AttributionParams):
    foreground_percentile: float = Field(95.0, gt=0.0, lt=100.0, description="saliency percentile above which pixels seed the object")
    background_percentile: float = Field(30.0, gt=0.0, lt=100.0, description="saliency percentile below which pixels seed the background")
    smoothing: float = Field(6.0, ge=0.0, le=50.0, description="Gaussian std (pixels) applied to the saliency map before seeding; 0: none")
    steps: int = p.steps(5, 1, 20, "GrabCut iterations")

    @model_validator(mode="after")
    def _ordered(self):
        if self.background_percentile >= self.foreground_percentile:
            raise ValueError("background_percentile must be below foreground_percentile")
        return self


def grabcut_mask(
    picture: np.ndarray, values: np.ndarray, fg_percentile: float, bg_percentile: float, smoothing: float, iterations: int
) -> np.ndarray:
    """Object mask (H x W, uint8 0/1) of an RGB uint8 picture, seeded by a saliency map."""
    if smoothing > 0:
        values = cv2.GaussianBlur(values, (0, 0), smoothing)
    high, low = np.percentile(values, [fg_percentile, bg_percentile])
    mask = np.full(values.shape, cv2.GC_PR_FGD, dtype=np.uint8)
    mask[values <= low] = cv2.GC_BGD
    mask[values >= high] = cv2.GC_FGD
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(picture[:, :, ::-1]), mask, None, background, foreground, iterations, cv2.GC_INIT_WITH_MASK)
    return np.isin(mask, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)


def segmentation_cost(model: ModelProfile, params: SegmentationParams, images: int) -> Cost:
    """Saliency's forward and backward pass (GrabCut runs on the CPU, outside the network)."""
    return gradient_cost(model, model.input_size, 2, 1, "")

@method(
    "segmentation",
    summary="Object mask from GrabCut seeded by the saliency map (Simonyan et al. 2014)",
    cost=segmentation_cost,
    category="attribute",
    params=SegmentationParams,
    requires=(CLASSIFIER,),
)
def segmentation(model: ConvLensModel, inputs, params: SegmentationParams, progress) -> Result:
    index = requested_class(model, params.target_class)
    image = model.fit_input(inputs["image"], params.fit)
    clock = Stopwatch()
    grad, logits, index = class_gradient(model, to_tensor(image, model.device), index)
    values = max_abs_over_channels(grad)
    clock.lap("saliency_ms")
    picture = np.asarray(image)
    mask = grabcut_mask(
        picture, values, params.foreground_percentile, params.background_percentile, params.smoothing, params.steps
    )
    clock.lap("grabcut_ms")
    return attribution_result(
        model, "segmentation", image, values, params, class_target(model, logits, index), "absolute", clock.laps,
        images={"mask": Image.fromarray(mask * 255, "L"), "masked": Image.fromarray(picture * mask[:, :, None], "RGB")},
        arrays={"foreground": mask},
        data={"object_fraction": float(mask.mean())},
        main="masked",
    )
