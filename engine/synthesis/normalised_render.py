"""The shared render loop, with the objective brought to a fixed starting scale.

torch's L-BFGS is not invariant to the scale of the loss: it stops when every
gradient entry is below an absolute tolerance (1e-7), and sizes its first step
by the gradient's L1 norm. A relative feature error (about 1) or features of a
network normalised to unit variance (EfficientNet) give gradients so small that
it never moves. So inversion, texture and style transfer minimise their
objective times the constant that makes its starting value 1e6 (the scale of
Gatys-style losses on Caffe VGG19, where L-BFGS is known to behave); the
minimiser is the same, and losses are reported unscaled.
"""

import math
from typing import Literal

import torch
from pydantic import Field

from engine import params as p
from engine.models import ConvLensModel
from engine.params import Seeded
from engine.optim.loop import ImageParam, Rendered, features_of, render
from engine.optim.objectives import Objective
from engine.progress import Progress, no_progress

START_LOSS = 1e6


class PixelSearchParams(Seeded):
    """What inversion, texture synthesis and style transfer share: pixels searched on the 0-255 scale."""

    steps: int = p.steps(200)
    optimizer: Literal["lbfgs", "adam"] = Field("lbfgs", description="L-BFGS (as in the papers) or Adam", json_schema_extra=p.RARE)
    step_size: float = p.step_size(1.0, "the optimizer's step on the pixels (1 suits both L-BFGS and Adam)")
    tv_weight: float = Field(0.0, ge=0, le=1e6, description="weight of the total-variation regularizer TV^beta (pixels in [0, 1])")
    tv_beta: float = Field(2.0, ge=1, le=4, description="exponent beta of the TV regularizer", json_schema_extra=p.RARE)
    preview_every: int = p.preview_every(10)


def render_normalised(
    model: ConvLensModel, param: ImageParam, objective: Objective, steps: int, progress: Progress = no_progress, **options
) -> Rendered:
    """:func:`engine.optim.loop.render` on ``objective`` rescaled to start at ``START_LOSS``."""
    with torch.no_grad():
        image = param.image_fn()
        start = float(objective(features_of(model, objective, image), image))
    scale = START_LOSS / start if math.isfinite(start) and start > 0 else 1.0

    def unscaled(step, total, preview=None, **info):
        progress(step, total, preview, **{**info, "loss": info["loss"] / scale})

    rendered = render(model, param, scale * objective, steps, progress=unscaled, **options)
    rendered.losses = [loss / scale for loss in rendered.losses]
    return rendered


def render_from_noise(model: ConvLensModel, objective: Objective, shape: tuple[int, ...], params: PixelSearchParams,
                      progress: Progress) -> Rendered:
    """Inversion's and texture's recipe: from seeded grey noise, pixels optimised on the 0-255 scale, returned clamped to [0, 1]."""
    generator = torch.Generator().manual_seed(params.seed)
    noise = 0.5 + 0.1 * torch.randn(shape, generator=generator)
    pixels = (noise * 255.0).to(model.device).requires_grad_(True)
    rendered = render_normalised(
        model,
        ImageParam([pixels], lambda: pixels / 255.0),
        objective,
        params.steps,
        optimizer=params.optimizer,
        lr=params.step_size,  # pixels on the 0-255 scale: a step of 1 moves one grey level
        progress=progress,
        preview_every=params.preview_every,
    )
    rendered.image = rendered.image.clamp(0, 1)
    return rendered
