"""Fast style transfer: a feed-forward network trained once to paint in a style
(Johnson et al. 2016, https://arxiv.org/abs/1603.08155), with instance
normalisation (Ulyanov et al. 2016, https://arxiv.org/abs/1607.08022); several
styles share one network through conditional instance normalisation, one
scale and shift per style and channel (Dumoulin et al. 2017,
https://arxiv.org/abs/1610.07629), so styles can also be mixed.

``train_style_model`` fits the transformer with the shared render loop
(:func:`engine.optim.loop.render`: the optimised parameters are the network's,
a step hook draws the next batch of random crops and flips of the content
collection and one style per batch). Content and style losses are relative
(squared error over the target's mean square), so the weights mean the same
for any loss network's feature scale. The trained weights come back as
``Result.tensors``; the service stores them as a style model and
:func:`stylise` applies one in a single forward pass.
"""

from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, Field
from torch import nn

from engine import params as p
from engine.capabilities import LAYERS, RESIZABLE
from engine.errors import InvalidParams
from engine.imaging import fit_image, tile_grid, to_image, to_tensor
from engine.models import ConvLensModel
from engine.optim.loop import ImageParam, Precision, render
from engine.optim.objectives import Objective
from engine.optim.report import plot_losses
from engine.optim.style_losses import gram_matrix, total_variation
from engine.params import Seeded, Sized
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, method
from engine.result import Result
from engine.models.units import named_layer
from engine.synthesis.feature_targets import check_feature_layers, content_layer_or_default, features, style_layers_or_default

MAX_STYLES = 16
OuterKernel = Literal[3, 5, 9]  # sides of the first and last convolutions


class StyleModelConfig(BaseModel):
    """What it takes to rebuild a trained transformer from its weights.

    The defaults of ``space_to_depth`` and ``outer_kernel`` are the layout of
    the first stored models (Johnson et al.'s), so their records load unchanged.
    """

    width: int = Field(ge=4, le=64)
    blocks: int = Field(ge=1, le=10)
    styles: int = Field(ge=1, le=MAX_STYLES)
    style_names: list[str]
    space_to_depth: bool = False
    outer_kernel: OuterKernel = 9


class CondInstanceNorm(nn.Module):
    """Instance norm whose scale and shift are a mix of per-style ones."""

    def __init__(self, channels: int, styles: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(styles, channels))
        self.shift = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x) * (mix @ self.scale)[None, :, None, None] + (mix @ self.shift)[None, :, None, None]


class ConvNorm(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, styles: int, stride: int = 1, relu: bool = True, upsample: bool = False):
        super().__init__()
        self.pad, self.upsample, self.relu = kernel // 2, upsample, relu
        self.conv = nn.Conv2d(cin, cout, kernel, stride)
        self.norm = CondInstanceNorm(cout, styles)

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.norm(self.conv(F.pad(x, [self.pad] * 4, mode="reflect")), mix)
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    def __init__(self, channels: int, styles: int):
        super().__init__()
        self.a, self.b = ConvNorm(channels, channels, 3, styles), ConvNorm(channels, channels, 3, styles, relu=False)

    def forward(self, x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x, mix), mix)


class Transformer(nn.Module):
    """RGB [0, 1] in, RGB [0, 1] out, same size (inputs are reflect-padded to a multiple of ``multiple``).

    ``space_to_depth`` folds each 2x2 block of pixels into 12 channels before the
    first convolution and unfolds the last one's 12 channels back (pixel
    unshuffle / shuffle, Shi et al. 2016, https://arxiv.org/abs/1609.05158), so no
    layer runs at full resolution and the residual blocks run at 1/8 of it.
    ``outer_kernel`` is the side of the first and last convolutions (Johnson's: 9).
    ``mix`` weights the styles (one-hot picks one); default: the first style.
    """

    def __init__(self, width: int, blocks: int, styles: int = 1, space_to_depth: bool = False, outer_kernel: int = 9):
        super().__init__()
        w, s = width, styles
        self.styles, self.fold, self.outer_pad = styles, 2 if space_to_depth else 1, outer_kernel // 2
        self.multiple = 4 * self.fold
        pixels = 3 * self.fold**2
        self.layers = nn.ModuleList(
            [ConvNorm(pixels, w, outer_kernel, s), ConvNorm(w, 2 * w, 3, s, stride=2), ConvNorm(2 * w, 4 * w, 3, s, stride=2)]
            + [Residual(4 * w, s) for _ in range(blocks)]
            + [ConvNorm(4 * w, 2 * w, 3, s, upsample=True), ConvNorm(2 * w, w, 3, s, upsample=True)]
        )
        self.out = nn.Conv2d(w, pixels, outer_kernel)

    def forward(self, x: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
        if mix is None:
            mix = one_hot(0, self.styles, x.device)
        height, width = x.shape[2:]
        x = F.pad(x, (0, -width % self.multiple, 0, -height % self.multiple), mode="reflect")
        x = F.pixel_unshuffle(x, self.fold).contiguous(memory_format=torch.channels_last)  # channels_last: faster convs on CPU
        for layer in self.layers:
            x = layer(x, mix)
        x = F.pixel_shuffle(self.out(F.pad(x, [self.outer_pad] * 4, mode="reflect")), self.fold)
        return torch.sigmoid(x)[:, :, :height, :width]


def one_hot(index: int, styles: int, device=None) -> torch.Tensor:
    return F.one_hot(torch.tensor(index), styles).float().to(device)


def build(config: StyleModelConfig) -> Transformer:
    return Transformer(config.width, config.blocks, config.styles, config.space_to_depth, config.outer_kernel).eval()


def style_mix(config: StyleModelConfig, style: int | None, weights: list[float] | None) -> torch.Tensor:
    """The mixing vector for one style index, or for weights (normalised to sum 1); InvalidParams otherwise."""
    if weights is not None:
        if style is not None:
            raise InvalidParams("give either style or style_weights, not both")
        if len(weights) != config.styles or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidParams(f"style_weights takes {config.styles} non-negative numbers, not all zero")
        mix = torch.tensor(weights, dtype=torch.float32)
        return mix / mix.sum()
    style = 0 if style is None else style
    if not 0 <= style < config.styles:
        raise InvalidParams(f"this style model has {config.styles} styles (0..{config.styles - 1}); got style {style}")
    return one_hot(style, config.styles)


def stylise(net: Transformer, image: Image.Image, mix: torch.Tensor, max_side: int) -> Image.Image:
    """``image`` through the trained network in one forward pass, returned at its own size.

    Pictures are worked at ``max_side`` at most, and at least at twice the
    network's ``multiple`` (the smallest side its reflect padding takes).
    """
    device = next(net.parameters()).device
    scale = max(min(1.0, max_side / max(image.size)), 2 * net.multiple / min(image.size))
    work = image if scale == 1.0 else image.resize((max(4, round(image.width * scale)), max(4, round(image.height * scale))), Image.BICUBIC)
    with torch.inference_mode():
        out = to_image(net(to_tensor(work, device), mix.to(device)))
    return out if out.size == image.size else out.resize(image.size, Image.BICUBIC)


class PerceptualLoss:
    """Johnson et al.'s loss for one style: relative content error at one layer, relative Gram error at others."""

    def __init__(self, model: ConvLensModel, style: torch.Tensor, content_layer: str, style_layers: list[str]):
        self.model, self.content_layer, self.style_layers = model, content_layer, list(style_layers)
        self.grams = {name: gram_matrix(value)[0] for name, value in features(model, style, style_layers).items()}
        self.scales = {name: gram.pow(2).mean().clamp_min(1e-12) for name, gram in self.grams.items()}

    def content(self, found: dict, target: torch.Tensor) -> torch.Tensor:
        return (found[self.content_layer] - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-12)

    def style(self, found: dict) -> torch.Tensor:
        return sum((gram_matrix(found[n]) - self.grams[n]).pow(2).mean() / self.scales[n] for n in self.style_layers)

    def evaluate(self, images: torch.Tensor, outputs: torch.Tensor) -> tuple[float, float]:
        """(content, style) loss of ``outputs`` as stylisations of ``images``."""
        layers = [self.content_layer, *self.style_layers]
        target = features(self.model, images, [self.content_layer])[self.content_layer]
        found = features(self.model, outputs, layers)
        return float(self.content(found, target)), float(self.style(found))


class TrainStyleParams(Sized, Seeded):
    steps: int = p.steps(2000, 1, 40000, "training steps (one batch each)")
    batch_size: int = p.batch_size(4, 32, "content crops per step")
    size: int = p.size(256, high=512, what=" (the training crops, and the style images)")
    lr: float = p.lr(1e-3, "the style network's weights (Adam)")
    content_weight: float = Field(1.0, ge=0, le=1e6, description="weight of the relative content (feature) loss")
    style_weight: float = Field(10.0, ge=0, le=1e6, description="weight of the relative style (Gram) loss")
    tv_weight: float = Field(10.0, ge=0, le=1e6, description="weight of the total-variation smoothness loss (pixels in [0, 1])",
                             json_schema_extra=p.RARE)
    content_layer: str | None = Field(None, description="loss-network layer compared for content; default: the model's content "
                                      "layer (block4_relu2 on vgg19; layer_roles in GET /v1/models/{name})",
                                      json_schema_extra=p.RARE)
    style_layers: list[str] | None = Field(None, min_length=1, max_length=16, description="loss-network layers whose Gram matrices "
                                           "carry the style; default: the model's style layers (the first ReLU of each block on vgg19)",
                                           json_schema_extra=p.RARE)
    base_channels: int = Field(16, ge=4, le=64, description="channels of the style network's first layer (x2, x4 after each downsampling)",
                               json_schema_extra=p.RARE)
    residual_blocks: int = Field(3, ge=1, le=10, description="residual blocks in the transformer", json_schema_extra=p.RARE)
    space_to_depth: bool = Field(True, description="fold 2x2 pixels into channels first (no full-resolution layer; residual blocks at 1/8 resolution); false: Johnson's layout",
                                 json_schema_extra=p.RARE)
    outer_kernel: OuterKernel = Field(3, description="side of the transformer's first and last convolutions (Johnson's: 9)",
                                      json_schema_extra=p.RARE)
    precision: Precision = Field("float32", description="bfloat16 runs the loss network under autocast; losses stay float32",
                                  json_schema_extra=p.RARE)
    style_names: list[str] | None = Field(None, max_length=MAX_STYLES, description="one name per style image; default style_0, style_1, ...")
    preview_every: int = p.preview_every(50)

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        loss_layers(model, self)


def loss_layers(model: ConvLensModel | ModelProfile, params: TrainStyleParams) -> tuple[str, tuple[str, ...]]:
    """The content layer (one the model has) and the style layers (each with feature maps: their Gram matrices
    carry the style), the defaults where the params name none."""
    content_layer = content_layer_or_default(model, params.content_layer)
    named_layer(model, content_layer, "content_layer")
    style_layers = style_layers_or_default(model, params.style_layers)
    check_feature_layers(model, style_layers, "style_layers")
    return content_layer, style_layers


def random_crops(images: list[Image.Image], side: int, count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` random square crops (shorter side scaled to 1-1.5x ``side``), each flipped half the time."""
    crops = []
    for index in rng.integers(0, len(images), count):
        image = images[index]
        scale = side * rng.uniform(1.0, 1.5) / min(image.size)
        resized = image.resize((max(side, round(image.width * scale)), max(side, round(image.height * scale))), Image.BILINEAR)
        left, top = rng.integers(0, resized.width - side + 1), rng.integers(0, resized.height - side + 1)
        crop = to_tensor(resized.crop((left, top, left + side, top + side)))
        crops.append(crop.flip(-1) if rng.random() < 0.5 else crop)
    return torch.cat(crops)


def train_style_cost(model: ModelProfile, params: TrainStyleParams, images: int) -> Cost:
    """Per step, the stylised crops and the crops themselves through the loss network, forward and backward; each
    style image's Gram matrices once."""
    return gradient_cost(model, params.run_size(model.input_size), 4 * params.steps * params.batch_size + images, 2 * params.batch_size,
                         "lower steps, batch_size or size")

@method(
    "train_style_model",
    summary="Train a feed-forward style network (one style, or several mixable ones) on a content collection",
    requires=(LAYERS, RESIZABLE,),
    cost=train_style_cost,
    category="synthesize",
    params=TrainStyleParams,
    inputs=(
        InputSlot("content", "pictures to train on (a collection; the built-in 'samples' is a good default)", many=True, min_count=1, max_count=256),
        InputSlot("style", "one style picture per style", many=True, min_count=1, max_count=MAX_STYLES),
    ),
    inline=False,
)
def train_style_model(model: ConvLensModel, inputs, params: TrainStyleParams, progress) -> Result:
    device, square = model.device, (params.size, params.size)
    styles = inputs["style"]
    names = params.style_names or [f"style_{i}" for i in range(len(styles))]
    if len(names) != len(styles):
        raise InvalidParams(f"style_names has {len(names)} names for {len(styles)} style images")
    content_layer, style_layers = loss_layers(model, params)
    losses = [PerceptualLoss(model, to_tensor(fit_image(s, square, "crop"), device), content_layer, style_layers) for s in styles]
    contents = [image.convert("RGB") for image in inputs["content"]]
    config = StyleModelConfig(width=params.base_channels, blocks=params.residual_blocks, styles=len(styles), style_names=names,
                              space_to_depth=params.space_to_depth, outer_kernel=params.outer_kernel)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        net = build(config).train().to(device)
    rng = np.random.default_rng(params.seed)
    batch: dict = {}

    def next_batch(*_):
        batch["images"] = random_crops(contents, params.size, params.batch_size, rng).to(device)
        batch["style"] = int(rng.integers(0, len(styles)))

    def stylised_then_originals() -> torch.Tensor:
        """One loss-network pass serves both: the stylised crops, then the crops (the content targets)."""
        return torch.cat([net(batch["images"], one_hot(batch["style"], len(styles), device)), batch["images"]])

    def perceptual(found, image):
        half, loss = len(image) // 2, losses[batch["style"]]
        stylised = {name: value[:half] for name, value in found.items()}
        target = found[content_layer][half:].detach()
        tv = total_variation_of({}, image[:half])
        return params.content_weight * loss.content(stylised, target) + params.style_weight * loss.style(stylised) + params.tv_weight * tv

    total_variation_of = total_variation()
    objective = Objective(perceptual, {content_layer, *style_layers}, "perceptual")
    next_batch()
    param = ImageParam(list(net.parameters()), stylised_then_originals)
    rendered = render(model, param, objective, params.steps, "adam", params.lr, step_hook=next_batch, progress=progress,
                      preview_every=params.preview_every, precision=params.precision)  # fmt: skip
    net.eval()
    examples = contents[: min(4, len(contents))]
    rows = [[np.asarray(fit_image(c, (128, 128), "crop")) for c in examples]]
    for index in range(len(styles)):
        rows.append([np.asarray(stylise(net, Image.fromarray(tile), one_hot(index, len(styles)), params.size)) for tile in rows[0]])
    data = {"style_model": config.model_dump(), "losses": rendered.losses, "steps": rendered.steps}
    return Result(
        images={"examples": tile_grid(np.stack([t for row in rows for t in row]), columns=len(examples)), "loss_curve": plot_losses(rendered.losses)},
        data=data,
        main="examples",
        tensors={name: value.detach().cpu().contiguous() for name, value in net.state_dict().items()},
    )
