"""DeepDream: amplify whatever a layer already sees in a picture.

Gradient ascent on the squared activations of one layer (Mordvintsev, Olah &
Tyka 2015, "Inceptionism"), with random jitter, gradient steps normalised by
their mean absolute value, and octaves: the picture is dreamt at a few scales,
smallest first, and the detail added at one scale is carried up to the next.
Pixels stay in [0, 1] throughout.
"""

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from pydantic import Field

from engine import params as p
from engine.capabilities import LAYERS, RESIZABLE
from engine.imaging import fit_image, to_image, to_tensor
from engine.models import ConvLensModel
from engine.optim.loop import Rendered, features_of, render
from engine.optim.objectives import deepdream as dream_objective
from engine.optim.params import pixels
from engine.optim.report import synthesis_result
from engine.optim.transforms import jitter
from engine.models.layer_roles import role_layers
from engine.params import AspectKept, Seeded
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.models.units import named_layer
from engine.registry import InputSlot, method
from engine.synthesis.feature_targets import MIN_SIDE, check_min_side
from engine.result import Result


class DeepDreamParams(AspectKept, Seeded):
    layer: str | None = Field(
        None, description="layer to amplify (default: a middle layer, block4_conv2 on vgg19, blocks.4 on efficientnet_lite0; "
        "GET /v1/models/{name} lists a model's layer_roles)",
        json_schema_extra=p.group("target"),
    )
    octaves: int = Field(3, ge=1, le=8, description="how many scales to dream at")
    octave_scale: float = Field(1.4, ge=1.1, le=2.0, description="size ratio between successive octaves", json_schema_extra=p.RARE)
    steps: int = p.steps(10, 1, 200, "gradient steps per octave")
    step_size: float = p.step_size(2.55, "how far pixels move per step (the gradient is normalized)")
    jitter: int = Field(8, ge=0, le=64, description="random shift (pixels, each direction) before every step", json_schema_extra=p.RARE)
    max_side: int = p.max_side(320, MIN_SIDE)
    preview_every: int = p.preview_every(5)

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        dream_layer(model, self.layer)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def deepdream_cost(model: ModelProfile, params: DeepDreamParams, images: int) -> Cost:
    """A forward and a backward pass per step and octave (the largest at max_side), and the layer's response before and after."""
    return gradient_cost(model, params.run_size(model.input_size), 2 * params.steps * params.octaves + 2, 1, "lower steps, octaves or max_side")


def dream_layer(model: ConvLensModel | ModelProfile, layer: str | None) -> str:
    """The layer to dream (``layer``, else the model's dream role), known to the model."""
    layer = layer or role_layers(model, "dream")[0]
    named_layer(model, layer)
    return layer


@method(
    "deepdream",
    summary="Amplify the patterns a layer sees in a picture (DeepDream, with octaves)",
    requires=(LAYERS, RESIZABLE,),
    cost=deepdream_cost,
    category="synthesize",
    params=DeepDreamParams,
    inputs=(InputSlot("image", "the picture to dream on"),),
    inline=False,
)
def deepdream(model: ConvLensModel, inputs, params: DeepDreamParams, progress) -> Result:
    """Dream ``params.layer`` into the picture over several octaves (Mordvintsev et al. 2015)."""
    layer = dream_layer(model, params.layer)
    picture = inputs["image"]
    scale = params.max_side / max(picture.size)
    size = (max(1, round(picture.height * scale)), max(1, round(picture.width * scale)))
    sizes = [
        (round(size[0] / params.octave_scale**k), round(size[1] / params.octave_scale**k))
        for k in reversed(range(params.octaves))
    ]
    check_min_side(sizes[0], "the smallest octave", "use fewer octaves, a smaller octave_scale, a larger max_side or a less elongated picture")
    original = to_tensor(fit_image(picture, size), model.device)
    objective = dream_objective(layer)
    generator = torch.Generator().manual_seed(params.seed)
    total = params.octaves * params.steps
    losses: list[float] = []
    detail = torch.zeros(1, 3, *sizes[0], device=model.device)
    for octave, octave_size in enumerate(sizes):
        base = _resize(original, octave_size)
        offset = octave * params.steps

        def octave_progress(step, _total, preview=None, **info):
            progress(offset + step, total, preview, octave=octave + 1, **info)

        rendered = render(
            model,
            pixels((base + _resize(detail, octave_size)).clamp(0, 1)),
            objective,
            params.steps,
            optimizer="normalized",
            lr=params.step_size / 255,  # grey levels, on pixels in [0, 1]
            transforms=[jitter(params.jitter, generator)],
            progress=octave_progress,
            preview_every=params.preview_every,
        )
        losses += rendered.losses
        detail = rendered.image - base
    with torch.no_grad():
        before = features_of(model, objective, original)[layer].norm()
        after = features_of(model, objective, rendered.image)[layer].norm()
    result = synthesis_result(
        Rendered(rendered.image, losses, total),
        {"layer": layer, "octave_sizes": [list(s) for s in sizes], "activation_gain": float(after / before.clamp_min(1e-12))},
    )
    result.images["input"] = to_image(original)
    return result
