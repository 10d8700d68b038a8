"""Universal perturbation: one small pattern that changes the label of most pictures.

After Moosavi-Dezfooli et al. 2017 (https://arxiv.org/abs/1610.08401): a
single perturbation within an L-infinity budget, shared by a whole collection.
Instead of their per-image DeepFool updates it takes projected sign-gradient
steps on the mean log-probability of every picture's original label, and
judges the fooling rate on the 8-bit images.
"""

import torch
from pydantic import BaseModel, Field

from engine.fool.attack import attack, describe, load_originals, norms, perturbation_picture, picture_grid, probabilities, watched
from engine.imaging import Fit
from engine.models import ConvLensModel
from engine.optim.objectives import class_log_prob
from engine.optim.report import plot_losses
from engine.registry import InputSlot, method
from engine.result import Result


class UniversalParams(BaseModel):
    eps: int = Field(8, ge=1, le=64, description="largest change of any pixel, in 8-bit grey levels (1/255)")
    steps: int = Field(40, ge=1, le=1000, description="most gradient steps over the whole collection")
    step_size: float = Field(1.0, gt=0, le=16, description="change per step, in 8-bit grey levels")
    stop_at_rate: float = Field(0.9, gt=0, le=1, description="stop once this fraction of the pictures is fooled")
    fit: Fit = Field("stretch", description="how the pictures are resized to the model's input size")
    preview_every: int = Field(5, ge=0, le=1000, description="send a preview picture every k steps (0: never)")


@method(
    "universal_perturbation",
    summary="One imperceptible pattern that changes the labels of most pictures in a collection",
    category="fool",
    params=UniversalParams,
    inputs=(InputSlot("images", "the pictures to fool together", many=True, min_count=2, max_count=32),),
    inline=False,
    needs_classifier=True,
)
def universal_perturbation(model: ConvLensModel, inputs, params: UniversalParams, progress) -> Result:
    """One perturbation that flips the labels of most pictures in a collection (Moosavi-Dezfooli et al. 2017)."""
    originals = load_originals(model, inputs["images"], params.fit)
    labels = probabilities(model, originals).argmax(-1)
    seen: dict = {}

    def fooling_rate(probs: torch.Tensor) -> float:
        return float((probs.argmax(-1) != labels).float().mean())

    rendered, perturbation = attack(
        model, originals, watched(-class_log_prob(labels.tolist()), seen), params.eps, params.steps,
        params.step_size, progress, params.preview_every,
        stop_when=lambda step, loss: fooling_rate(seen["probs"]) >= params.stop_at_rate,
    )
    before, after = probabilities(model, originals), probabilities(model, rendered.image)
    per_image = [
        {"original": describe(model, b), "adversarial": describe(model, a), "fooled": int(a.argmax()) != int(b.argmax())}
        for b, a in zip(before, after)
    ]
    data = {
        "fooling_rate": fooling_rate(after),
        "images": per_image,
        "steps": rendered.steps,
        "losses": rendered.losses,
        "eps_255": params.eps,
        "perturbation": norms(perturbation),
    }
    return Result(
        images={
            "perturbation": perturbation_picture(perturbation, params.eps),
            "adversarial": picture_grid(rendered.image),
            "loss_curve": plot_losses(rendered.losses),
        },
        arrays={"perturbation": perturbation[0].cpu().numpy()},
        data=data,
        main="perturbation",
    )
