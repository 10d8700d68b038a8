"""Fooling image: nudge a picture, invisibly, until the model calls it a chosen class.

Targeted attack in the spirit of Szegedy et al. 2014
(https://arxiv.org/abs/1312.6199), solved with projected sign-gradient ascent
on the target's log-probability inside an L-infinity ball (Madry et al. 2018,
https://arxiv.org/abs/1706.06083). Every step is judged on the 8-bit image, so
the returned PNG still fools the model after it is saved and loaded again.
"""

from collections.abc import Mapping

from pydantic import Field

from engine import params as p
from engine.capabilities import CLASSIFIER
from engine.fool.attack import attack, describe, load_originals, probabilities, single_image_result, watched
from engine.models import ConvLensModel
from engine.optim.objectives import class_log_prob
from engine.params import Fitted
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.models.units import naming
from engine.registry import InputSlot, method
from engine.result import Result


class FoolingImageParams(Fitted):
    target_class: int | str = Field(
        "ostrich", description="the class the model should see, as an index or a label (case-insensitive); required where the "
        "model has no class called 'ostrich'",
    )
    eps: int = p.eps(4)
    step_size: float = p.step_size(0.5)
    steps: int = p.steps(200, 1, 2000, "most gradient steps to take")
    confidence: float = Field(0.5, ge=0, lt=1, description="stop once the target is the top class with at least this probability")
    preview_every: int = p.preview_every(10)

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        with naming("target_class"):
            model.class_index(self.target_class)


def fooling_image_cost(model: ModelProfile, params: FoolingImageParams, images: int) -> Cost:
    """A forward and a backward pass per step, at most ``steps``, plus the original's and the result's forward passes."""
    return gradient_cost(model, model.input_size, 2 * params.steps + 2, 1, "lower steps")

@method(
    "fooling_image",
    summary="Change a picture imperceptibly until the model sees a chosen class",
    cost=fooling_image_cost,
    category="fool",
    params=FoolingImageParams,
    inputs=(InputSlot("image", "the picture to change"),),
    inline=False,
    requires=(CLASSIFIER,),
)
def fooling_image(model: ConvLensModel, inputs, params: FoolingImageParams, progress) -> Result:
    """Targeted adversarial image within an L-infinity budget (Szegedy et al. 2014; Madry et al. 2018)."""
    target = model.class_index(params.target_class)
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
