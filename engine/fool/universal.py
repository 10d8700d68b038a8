"""Universal perturbation: one small pattern that changes the label of most pictures
(Moosavi-Dezfooli et al. 2017, https://arxiv.org/abs/1610.08401).

The perturbation is fitted on one part of a collection and judged on the
held-out rest, beside random noise of the same L-infinity norm (a random sign
per pixel at that norm, which has at least the perturbation's L2 norm), so the
reported rate is about the pattern, not about the budget. Two constructions:

- ``deepfool``, the paper's: visit the fitting pictures in turn; where one is
  not yet fooled, add the smallest change that crosses its nearest decision
  boundary (DeepFool, Moosavi-Dezfooli et al. 2016, on the linearised network
  over its top candidate classes) and project back into the budget;
- ``sign``: projected sign-gradient steps on the mean log-probability of every
  picture's original label (all pictures at once, through the shared loop).

Fooling is always judged on the 8-bit images.
"""

from typing import Literal

import torch
from pydantic import Field

from engine import params as p
from engine.capabilities import CLASSIFIER
from engine.errors import InvalidParams
from engine.fool.attack import attack, describe, load_originals, norms, perturbation_picture, picture_grid, probabilities, watched
from engine.models import ConvLensModel
from engine.picture_names import picture_ref
from engine.optim.objectives import class_log_prob
from engine.optim.report import plot_losses
from engine.progress import Progress
from engine.params import Fitted, Seeded
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result


SIGN_STEPS, DEEPFOOL_PASSES = 40, 3  # the default steps of each algorithm


class UniversalParams(Fitted, Seeded):
    algorithm: Literal["deepfool", "sign"] = Field("sign", description="the paper's DeepFool-based construction, or projected sign-gradient steps")
    eps: int = p.eps(8)
    holdout: float = Field(0.5, ge=0, le=0.9, description="fraction of the pictures kept out of fitting and used to judge the perturbation", json_schema_extra=p.RARE)
    steps: int | None = p.steps(None, 1, 1000, f"sign: most gradient steps over the fitting pictures (default {SIGN_STEPS}); deepfool: "
                                f"most passes over them (default {DEEPFOOL_PASSES})")
    step_size: float = p.step_size(1.0, "sign: change of a pixel per step")
    candidates: int = Field(8, ge=2, le=50, description="deepfool: classes (top scores) whose boundaries are considered", json_schema_extra=p.RARE)
    overshoot: float = Field(0.02, ge=0, le=1, description="deepfool: step this much past each boundary", json_schema_extra=p.RARE)
    stop_at_rate: float | None = Field(0.9, gt=0, le=1, description="stop once this fraction of the fitting pictures is fooled (null: use every step or pass)")
    preview_every: int = p.preview_every(5)

    @property
    def step_count(self) -> int:
        """The steps (sign) or passes (deepfool) this call takes at most."""
        return self.steps if self.steps is not None else (SIGN_STEPS if self.algorithm == "sign" else DEEPFOOL_PASSES)


def quantised(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round() / 255


def fooling_rate(model: ConvLensModel, images: torch.Tensor, labels: torch.Tensor, delta: torch.Tensor) -> float:
    if len(images) == 0:
        return float("nan")
    return float((probabilities(model, quantised(images + delta)).argmax(-1) != labels).float().mean())


def deepfool_step(model: ConvLensModel, image: torch.Tensor, label: int, candidates: int, overshoot: float, max_iter: int = 20) -> torch.Tensor:
    """The smallest change (L2, linearised) that moves ``image`` (1, 3, H, W) off class ``label``."""
    with torch.inference_mode():
        classes = model(image).topk(candidates + 1, -1).indices[0]
    classes = torch.cat([torch.tensor([label], device=image.device), classes[classes != label][:candidates]])
    total = torch.zeros_like(image)
    for _ in range(max_iter):
        if int(probabilities(model, quantised(image + (1 + overshoot) * total)).argmax()) != label:
            break  # judged on the 8-bit picture: a step lost to rounding is no step
        x = (image + (1 + overshoot) * total).repeat(len(classes), 1, 1, 1).requires_grad_(True)
        logits = model(x)
        logits.gather(1, classes.view(-1, 1)).sum().backward()
        grads = x.grad.detach()
        w = grads[1:] - grads[:1]  # (K, 3, H, W)
        f = (logits[1:, classes[1:]].diagonal() - logits[0, label]).detach()  # negative while label wins
        distance = f.abs() / w.flatten(1).norm(dim=1).clamp_min(1e-12)
        k = int(distance.argmin())
        total = total + (distance[k] + 1e-4) * w[k : k + 1] / w[k].norm().clamp_min(1e-12)
    return (1 + overshoot) * total


def deepfool_universal(model: ConvLensModel, images: torch.Tensor, labels: torch.Tensor, params: UniversalParams, progress: Progress) -> tuple[torch.Tensor, list[float]]:
    """The paper's Algorithm 1: accumulate per-picture DeepFool steps, projected onto the L-infinity ball."""
    eps = params.eps / 255
    delta = torch.zeros_like(images[:1])
    rates, total = [], params.step_count * len(images)
    for visit in range(total):
        index = visit % len(images)
        with torch.no_grad():
            x = quantised(images[index : index + 1] + delta)
        if int(probabilities(model, x).argmax()) == int(labels[index]):
            step = deepfool_step(model, images[index : index + 1] + delta, int(labels[index]), params.candidates, params.overshoot)
            delta = (delta + step).clamp(-eps, eps)
        if index == len(images) - 1:
            rates.append(fooling_rate(model, images, labels, delta))
            if params.stop_at_rate is not None and rates[-1] >= params.stop_at_rate:
                progress(visit + 1, visit + 1, None, loss=1 - rates[-1])
                break
        progress(visit + 1, total, None, loss=1 - rates[-1] if rates else None)
    return (delta * 255).round() / 255, rates


DEEPFOOL_ITERATIONS = 3  # DeepFool's linearised steps per picture, as typically taken (at most 20)


def universal_cost(model: ModelProfile, params: UniversalParams, images: int) -> Cost:
    """Sign: a forward and a backward pass of every fitting picture per step. DeepFool: per fitting picture and
    pass, a check, the candidates' ranking and its typical steps, each a forward and backward pass of the candidates.
    Plus the forward passes judging the pictures: labels, before, after, the fitting set's and the held-out set's rates
    (with the perturbation, and with noise)."""
    fitting = max(1, round(images * (1 - params.holdout)))
    if params.algorithm == "sign":
        passes, batch = 2 * params.step_count * fitting, fitting
    else:
        per_visit = 2 + DEEPFOOL_ITERATIONS * (1 + 2 * (params.candidates + 1))
        passes, batch = params.step_count * fitting * per_visit, params.candidates + 1
    judging = 4 * images + (images - fitting)
    return gradient_cost(model, model.input_size, passes + judging, batch, "lower steps, candidates or the pictures")

@method(
    "universal_perturbation",
    summary="One imperceptible pattern, fitted on part of a collection, that changes the labels of the held-out rest",
    cost=universal_cost,
    category="fool",
    params=UniversalParams,
    inputs=(InputSlot("images", "the pictures: some fit the perturbation, the rest judge it", many=True, min_count=2, max_count=256),),
    inline=False,
    requires=(CLASSIFIER,),
)
def universal_perturbation(model: ConvLensModel, inputs, params: UniversalParams, progress) -> Result:
    """One perturbation for a whole collection, judged on held-out pictures (Moosavi-Dezfooli et al. 2017)."""
    originals = load_originals(model, inputs["images"], params.fit)
    order = torch.randperm(len(originals), generator=torch.Generator().manual_seed(params.seed))
    held_count = int(round(params.holdout * len(originals)))
    if held_count >= len(originals):
        raise InvalidParams(f"holdout {params.holdout} leaves no picture to fit on ({len(originals)} pictures)")
    fit_idx, held_idx = order[held_count:].sort().values, order[:held_count].sort().values
    labels = probabilities(model, originals).argmax(-1)
    fit_images, fit_labels = originals[fit_idx], labels[fit_idx]
    if params.algorithm == "deepfool":
        perturbation, rates = deepfool_universal(model, fit_images, fit_labels, params, progress)
        losses, steps = [1 - r for r in rates], len(rates)
    else:
        seen: dict = {}
        rendered, perturbation = attack(
            model, fit_images, watched(-class_log_prob(fit_labels.tolist()), seen), params.eps, params.step_count,
            params.step_size, progress, params.preview_every,
            stop_when=None if params.stop_at_rate is None else lambda step, loss: float((seen["probs"].argmax(-1) != fit_labels).float().mean()) >= params.stop_at_rate,
        )  # fmt: skip
        losses, steps = rendered.losses, rendered.steps
    noise_gen = torch.Generator().manual_seed(params.seed + 1)
    linf = perturbation.abs().max()
    noise = (torch.randint(0, 2, perturbation.shape, generator=noise_gen).to(perturbation) * 2 - 1) * linf
    held, held_labels = originals[held_idx], labels[held_idx]
    adversarial = quantised(originals + perturbation)
    before, after = probabilities(model, originals), probabilities(model, adversarial)
    held_set = set(held_idx.tolist())
    per_image = [
        {"picture": picture_ref(inputs["images"], i), "original": describe(model, b), "adversarial": describe(model, a),
         "fooled": int(a.argmax()) != int(b.argmax()), "held_out": i in held_set}
        for i, (b, a) in enumerate(zip(before, after))
    ]
    data = {
        "algorithm": params.algorithm,
        "fit_images": fit_idx.tolist(),
        "held_out_images": held_idx.tolist(),
        "fit_fooling_rate": fooling_rate(model, fit_images, fit_labels, perturbation),
        "held_out_fooling_rate": fooling_rate(model, held, held_labels, perturbation) if held_count else None,
        "held_out_noise_fooling_rate": fooling_rate(model, held, held_labels, noise) if held_count else None,
        "noise": {"kind": "random sign per pixel at the perturbation's L-infinity norm", **norms(noise)},
        "images": per_image,
        "steps": steps,
        "losses": losses,
        "eps_255": params.eps,
        "perturbation": norms(perturbation),
    }
    return Result(
        images={"perturbation": perturbation_picture(perturbation, params.eps), "adversarial": picture_grid(adversarial), "loss_curve": plot_losses(losses)},
        arrays={"delta": perturbation[0].cpu().numpy()},
        data=data,
        main="perturbation",
    )
