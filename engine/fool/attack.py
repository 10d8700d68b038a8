"""What the adversarial methods share: projected sign-gradient steps inside an
L-infinity ball, always judged on the 8-bit image the client gets back.

The perturbation lives on top of the original pictures (see
:func:`engine.optim.params.bounded_perturbation`): the network only ever sees
the perturbed images clipped to [0, 1] and rounded to 8 bits, so a reported
success is a success for the saved PNG. Budgets and step sizes are given in
1/255 units, the size of one 8-bit grey level.
"""

from typing import Callable

import numpy as np
import torch
from PIL import Image

from engine.imaging import Fit, tile_grid, to_image, to_tensor
from engine.models import ConvLensModel
from engine.optim.loop import Rendered, render
from engine.optim.objectives import OUTPUT, Objective
from engine.optim.params import bounded_perturbation
from engine.optim.report import plot_losses
from engine.progress import Progress
from engine.result import Result


def load_originals(model: ConvLensModel, pictures: list[Image.Image], fit: Fit) -> torch.Tensor:
    """The pictures at the model's input size, as one batch on the 8-bit grid."""
    return torch.cat([to_tensor(model.fit_input(p, fit), model.device) for p in pictures])


def probabilities(model: ConvLensModel, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(images).softmax(-1)


def describe(model: ConvLensModel, probs: torch.Tensor, index: int | None = None) -> dict:
    """Index, label and probability of class ``index`` (default: the top class) for one image."""
    return model.class_entry(int(probs.argmax()) if index is None else index, probs)


def watched(objective: Objective, seen: dict) -> Objective:
    """``objective`` that also keeps, in ``seen["probs"]``, the class probabilities of each image it scores."""

    def fn(features, image):
        seen["probs"] = features[OUTPUT].detach().softmax(-1)
        return objective(features, image)

    return Objective(fn, objective.layers | {OUTPUT}, objective.name)


def attack(
    model: ConvLensModel,
    originals: torch.Tensor,
    objective: Objective,
    eps: int,
    steps: int,
    step_size: float,
    progress: Progress,
    preview_every: int,
    stop_when: Callable[[int, float], bool] | None = None,
    random_start: bool = False,
    seed: int = 0,
) -> tuple[Rendered, torch.Tensor]:
    """Minimise ``objective`` over one perturbation shared by ``originals``, ``|delta| <= eps / 255``.

    Returns the run, whose ``image`` is the batch of quantised adversarial
    images (N, 3, H, W), and the shared perturbation on the 8-bit grid (1, 3, H, W).
    """
    generator = torch.Generator().manual_seed(seed)
    param = bounded_perturbation(originals, eps / 255, random_start, generator)
    rendered = render(
        model,
        param,
        objective,
        steps,
        optimizer="sign",
        lr=step_size / 255,
        progress=progress,
        preview_every=preview_every,
        stop_when=stop_when,
    )
    return rendered, (param.params[0].detach() * 255).round() / 255


def norms(delta: torch.Tensor) -> dict:
    """L-infinity and L2 norms of a perturbation, in 1/255 units and in [0, 1] units."""
    levels = delta * 255
    linf, l2 = round(float(levels.abs().max()), 4), round(float(levels.norm()), 4)
    return {"linf_255": linf, "l2_255": l2, "linf": linf / 255, "l2": l2 / 255}


def perturbation_picture(delta: torch.Tensor, eps: int) -> Image.Image:
    """The perturbation made visible: mid-grey is zero, black and white are -eps and +eps."""
    return to_image(0.5 + delta * (255 / (2 * eps)))


def picture_grid(images: torch.Tensor) -> Image.Image:
    """A batch of images side by side (a grid for many)."""
    tiles = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return tile_grid(np.ascontiguousarray(tiles))


def single_image_result(
    model: ConvLensModel, original: torch.Tensor, rendered: Rendered, eps: int, before: torch.Tensor, after: torch.Tensor, **data
) -> Result:
    """What a one-picture attack returns: the 8-bit adversarial picture, the amplified
    perturbation, the original and the loss curve, with labels, steps and norms."""
    delta = rendered.image - original
    return Result(
        images={
            "adversarial": to_image(rendered.image),
            "perturbation": perturbation_picture(delta, eps),
            "original": to_image(original),
            "loss_curve": plot_losses(rendered.losses),
        },
        data={
            **data,
            "original": describe(model, before),
            "adversarial": describe(model, after),
            "steps": rendered.steps,
            "losses": rendered.losses,
            "eps_255": eps,
            "perturbation": norms(delta),
        },
        main="adversarial",
    )
