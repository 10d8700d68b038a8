"""Untargeted adversarial example: FGSM or PGD inside an L-infinity ball.

FGSM takes one step of size eps along the sign of the loss gradient
(Goodfellow et al. 2015, https://arxiv.org/abs/1412.6572); PGD repeats smaller
projected steps from a random start (Madry et al. 2018,
https://arxiv.org/abs/1706.06083). The loss is the original label's
log-probability, and the images are judged after 8-bit rounding.
"""

from typing import Literal

from pydantic import Field

from engine import params as p
from engine.capabilities import CLASSIFIER
from engine.fool.attack import attack, load_originals, probabilities, single_image_result, watched
from engine.models import ConvLensModel
from engine.optim.objectives import class_log_prob
from engine.params import Fitted, Seeded
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result


class UntargetedParams(Fitted, Seeded):
    attack: Literal["fgsm", "pgd"] = Field("pgd", description="fgsm: one step of size eps; pgd: projected steps")
    eps: int = p.eps(4)
    steps: int = p.steps(20, 1, 1000, "PGD: most steps (stops once the label flips)")
    step_size: float = p.step_size(1.0, "PGD: change of a pixel per step")
    random_start: bool = Field(True, description="PGD: start from a random point of the eps ball", json_schema_extra=p.RARE)
    preview_every: int = p.preview_every(5)


def untargeted_cost(model: ModelProfile, params: UntargetedParams, images: int) -> Cost:
    """A forward and a backward pass per step (FGSM: one step); the labels are read off those passes."""
    steps = 1 if params.attack == "fgsm" else params.steps
    return gradient_cost(model, model.input_size, 2 * steps, 1, "lower steps")

@method(
    "adversarial_untargeted",
    summary="Flip the model's label with an imperceptible change (FGSM or PGD)",
    cost=untargeted_cost,
    category="fool",
    params=UntargetedParams,
    inputs=(InputSlot("image", "the picture to change"),),
    inline=False,
    requires=(CLASSIFIER,),
)
def adversarial_untargeted(model: ConvLensModel, inputs, params: UntargetedParams, progress) -> Result:
    """Make the model drop the picture's label (FGSM, Goodfellow et al. 2015; PGD, Madry et al. 2018)."""
    original = load_originals(model, [inputs["image"]], params.fit)
    before = probabilities(model, original)[0]
    label = int(before.argmax())
    seen: dict = {}
    fgsm = params.attack == "fgsm"
    rendered, _ = attack(
        model,
        original,
        watched(-class_log_prob(label), seen),
        params.eps,
        1 if fgsm else params.steps,
        params.eps if fgsm else params.step_size,
        progress,
        params.preview_every,
        stop_when=lambda step, loss: int(seen["probs"][0].argmax()) != label,
        random_start=params.random_start and not fgsm,
        seed=params.seed,
    )
    after = probabilities(model, rendered.image)[0]
    return single_image_result(
        model, original, rendered, params.eps, before, after,
        original_label_probability=float(after[label]), success=int(after.argmax()) != label,
    )
