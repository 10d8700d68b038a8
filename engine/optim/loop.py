"""The render loop shared by class visualisation, DeepDream, inversion, texture,
style transfer and adversarial images.

Each step runs the network only as deep as the objective needs (a capture
hook stops the forward pass once every needed layer has produced its output),
takes one optimiser step on the image parameters, and reports progress with
the current loss; a preview picture is made every ``preview_every`` steps.
"""

from dataclasses import dataclass, field
from typing import Callable, Literal, Sequence

import torch

from engine.hooks import capture, run_until
from engine.imaging import to_image
from engine.models import ConvLensModel
from engine.optim.objectives import INPUT_OF, OUTPUT, Objective
from engine.optim.optimizers import OptimizerName, make_optimizer
from engine.optim.transforms import Transform
from engine.progress import Progress, no_progress

Precision = Literal["float32", "bfloat16"]
StepHook = Callable[[int, list[torch.Tensor]], None]


@dataclass
class ImageParam:
    """Tensors the optimiser changes, how they become an RGB image in [0, 1], and
    an optional in-place projection run after every step (e.g. clip to [0, 1])."""

    params: list[torch.Tensor]
    image_fn: Callable[[], torch.Tensor]
    constrain: Callable[[], object] | None = None


@dataclass
class Rendered:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1], detached
    losses: list[float] = field(default_factory=list)
    steps: int = 0


def hooked(model: ConvLensModel, objective: Objective) -> tuple[dict[str, torch.nn.Module], frozenset[str]]:
    """The modules ``objective`` reads, by feature name, and the names that read a module's input."""
    names = objective.layers - {OUTPUT}
    modules = {name: model.layer(name.removeprefix(INPUT_OF)) for name in names}
    return modules, frozenset(name for name in names if name.startswith(INPUT_OF))


def features_of(model: ConvLensModel, objective: Objective, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """The features ``objective`` reads, from one (possibly truncated) forward pass."""
    modules, inputs = hooked(model, objective)
    with capture(modules, stop_early=OUTPUT not in objective.layers, inputs=inputs) as feats:
        output = run_until(model, image)
        found = dict(feats)
    if OUTPUT in objective.layers:
        found[OUTPUT] = output
    return found


def render(
    model: ConvLensModel,
    param: ImageParam,
    objective: Objective,
    steps: int,
    optimizer: OptimizerName = "adam",
    lr: float = 0.05,
    transforms: Sequence[Transform] = (),
    step_hook: StepHook | None = None,
    progress: Progress = no_progress,
    preview_every: int = 0,
    stop_when: Callable[[int, float], bool] | None = None,
    precision: Precision = "float32",
) -> Rendered:
    """Minimise ``objective`` over ``param`` for ``steps`` steps.

    ``optimizer`` names Adam, L-BFGS or a fixed-size ``sign`` / ``normalized``
    gradient step (see :mod:`engine.optim.optimizers`). ``transforms`` are
    applied to the image before the network sees it (jitter, scaling...);
    after each step ``param.constrain()`` and then ``step_hook(step, params)``
    run under ``no_grad`` (blur, clipping regularisers; the params' ``.grad``
    still holds this step's gradient). ``stop_when(step, loss)`` is asked
    before the step's update: when it answers true the run ends and the image
    returned is the one that ``loss`` was measured on. ``precision="bfloat16"``
    runs the network's forward pass under bfloat16 autocast (much faster on
    CPUs and GPUs with bf16 units) while the objective is computed in float32.
    """
    modules, inputs = hooked(model, objective)
    wants_output = OUTPUT in objective.layers
    opt = make_optimizer(optimizer, param.params, lr)
    losses: list[float] = []
    step = 0
    with capture(modules, stop_early=not wants_output, inputs=inputs) as feats:

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            image = param.image_fn()
            for transform in transforms:
                image = transform(image)
            feats.clear()
            with torch.autocast(image.device.type, torch.bfloat16, enabled=precision == "bfloat16"):
                output = run_until(model, image)
            found = {name: value.float() for name, value in feats.items()}
            if wants_output:
                found[OUTPUT] = output.float()
            loss = objective(found, image)
            loss.backward()
            return loss

        for step in range(1, steps + 1):
            if optimizer == "lbfgs":  # L-BFGS evaluates inside its step; keep the point it started from
                before = [p.detach().clone() for p in param.params]
                loss = float(opt.step(closure).detach())
            else:
                loss = float(closure().detach())
            losses.append(loss)
            stop = stop_when is not None and stop_when(step, loss)
            if stop and optimizer == "lbfgs":
                with torch.no_grad():
                    for p, old in zip(param.params, before):
                        p.copy_(old)
            elif not stop:
                if optimizer != "lbfgs":
                    opt.step()
                with torch.no_grad():
                    if param.constrain is not None:
                        param.constrain()
                    if step_hook is not None:
                        step_hook(step, param.params)
            preview = None
            if preview_every and (stop or step % preview_every == 0 or step == steps):
                with torch.no_grad():
                    preview = to_image(param.image_fn())
            progress(step, steps, preview, loss=loss)
            if stop:
                break
    with torch.no_grad():
        image = param.image_fn().detach().clone()
    return Rendered(image=image, losses=losses, steps=step)
