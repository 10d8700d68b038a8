"""Fooling image: nudge a picture, invisibly, until the model calls it a chosen class.

Targeted attack in the spirit of Szegedy et al. 2014
(https://arxiv.org/abs/1312.6199), solved with projected sign-gradient ascent
on the target's log-probability inside an L-infinity ball (Madry et al. 2018,
https://arxiv.org/abs/1706.06083). Every step is judged on the 8-bit image, so
the returned PNG still fools the model after it is saved and loaded again.
"""

from pydantic import BaseModel, Field

from engine.capabilities import CLASSIFIER
from engine.fool.attack import attack, describe, load_originals, probabilities, single_image_result, watched
from engine.imaging import Fit
from engine.models import ConvLensModel
from engine.optim.objectives import class_log_prob
from engine.registry import InputSlot, method
from engine.result import Result


class FoolingImageParams(BaseModel):
    target: int | str = Field("ostrich", description="the class the model should see: index or label")
    eps: int = Field(4, ge=1, le=64, description="largest change of any pixel, in 8-bit grey levels (1/255)")
    step_size: float = Field(0.5, gt=0, le=16, description="change per step, in 8-bit grey levels")
    steps: int = Field(200, ge=1, le=2000, description="most gradient steps to take")
    confidence: float = Field(0.5, ge=0, lt=1, description="stop once the target is the top class with at least this probability")
    fit: Fit = Field("stretch", description="how the picture is resized to the model's input size")
    preview_every: int = Field(10, ge=0, le=1000, description="send a preview picture every k steps (0: never)")


@method(
    "fooling_image",
    summary="Change a picture imperceptibly until the model sees a chosen class",
    category="fool",
    params=FoolingImageParams,
    inputs=(InputSlot("image", "the picture to change"),),
    inline=False,
    requires=(CLASSIFIER,),
)
def fooling_image(model: ConvLensModel, inputs, params: FoolingImageParams, progress) -> Result:
    """Targeted adversarial image within an L-infinity budget (Szegedy et al. 2014; Madry et al. 2018)."""
    target = model.class_index(params.target)
    original = load_originals(model, [inputs["image"]], params.fit)
    seen: dict = {}

    def fooled(step: int, loss: float) -> bool:
        probs = seen["probs"][0]
        return int(probs.argmax()) == target and float(probs[target]) >= params.confidence

    rendered, _ = attack(
        model, original, watched(class_log_prob(target), seen), params.eps, params.steps, params.step_size,
        progress, params.preview_every, stop_when=fooled,
    )
    before, after = probabilities(model, original)[0], probabilities(model, rendered.image)[0]
    return single_image_result(
        model, original, rendered, params.eps, before, after,
        target=describe(model, after, target), success=int(after.argmax()) == target,
    )
