"""Class visualisation: the image a network scores highest for a class, layer,
channel or neuron.

Gradient ascent on the unnormalised class score minus an L2 penalty
(Simonyan et al. 2014, https://arxiv.org/abs/1312.6034), with Yosinski et
al.'s regularisers (2015, https://arxiv.org/abs/1506.06579): Gaussian blur
every few steps, resetting pixels of small norm or small contribution, and
random jitter. Objectives combine with weights, so one request can ask for
"flamingo, plus a little of channel 12 of conv_head".
"""

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torchvision.transforms.v2.functional import gaussian_blur

from engine.errors import InvalidParams, UnsupportedModel
from engine.models import ConvLensModel
from engine.optim import objectives as obj
from engine.optim.loop import render
from engine.optim.params import Start, pixels, start_image
from engine.optim.report import synthesis_result
from engine.optim.transforms import jitter, pad, random_rotate, random_scale
from engine.registry import method
from engine.result import Result


class ObjectiveTerm(BaseModel):
    """One weighted term of the objective (maximised)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, extra="forbid")

    kind: Literal["class", "layer", "channel", "neuron", "deepdream"] = Field(
        "class",
        description="class: unnormalised class score; layer: mean activation of a layer; channel: mean of one "
        "channel; neuron: one channel at one position; deepdream: mean squared activation of a layer",
    )
    class_: int | str | None = Field(None, alias="class", description="class index or label (kind=class)")
    layer: str | None = Field(None, description="layer name from the model's catalogue (all kinds but class)")
    channel: int | None = Field(None, ge=0, description="channel index (kind=channel or neuron)")
    y: int | None = Field(None, ge=0, description="neuron row in the layer's feature map (default: centre)")
    x: int | None = Field(None, ge=0, description="neuron column in the layer's feature map (default: centre)")
    weight: float = Field(1.0, ge=-100, le=100, description="weight of this term in the sum")

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "class" and self.class_ is None:
            raise ValueError("kind 'class' needs 'class'")
        if self.kind != "class" and not self.layer:
            raise ValueError(f"kind {self.kind!r} needs 'layer'")
        if self.kind in ("channel", "neuron") and self.channel is None:
            raise ValueError(f"kind {self.kind!r} needs 'channel'")
        return self


class ClassVisualizationParams(BaseModel):
    objectives: list[ObjectiveTerm] = Field(
        default_factory=lambda: [ObjectiveTerm(kind="class", class_="flamingo")],
        min_length=1,
        max_length=8,
        description="weighted terms to maximise together",
    )
    size: int = Field(224, ge=32, le=512, description="side of the square image, in pixels")
    steps: int = Field(200, ge=1, le=2000, description="optimisation steps")
    lr: float = Field(0.05, gt=0, le=1, description="Adam learning rate, in pixel units ([0, 1] range)")
    init: Start = Field("mean", description="start from black (zeros), the dataset-mean colour, or mean plus noise")
    l2: float = Field(2.0, ge=0, le=100, description="weight of the penalty on mean squared distance from the mean colour")
    jitter: int = Field(8, ge=0, le=64, description="random shift (pixels, each direction) applied every step")
    pad: int = Field(8, ge=0, le=64, description="reflect-pad the image by this many pixels before the other transforms")
    scale: float = Field(0.1, ge=0, le=0.5, description="random rescaling by up to this fraction every step (0: off)")
    rotate: float = Field(5.0, ge=0, le=45, description="random rotation by up to this many degrees every step (0: off)")
    blur_every: int = Field(4, ge=0, le=100, description="Gaussian-blur the image every k steps (0: off)")
    blur_sigma: float = Field(0.5, ge=0.1, le=5, description="blur standard deviation, in pixels")
    clip_norm_percentile: float = Field(0.0, ge=0, le=100, description="reset pixels whose norm is below this percentile to the mean colour (0: off)")
    clip_contribution_percentile: float = Field(
        0.0, ge=0, le=100, description="reset pixels whose contribution |x * grad| is below this percentile (0: off)"
    )
    preview_every: int = Field(10, ge=0, le=1000, description="send a preview picture every k steps (0: never)")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed for noise and jitter (same seed, same picture)")


def term_objective(model: ConvLensModel, term: ObjectiveTerm, size: tuple[int, int]) -> obj.Objective:
    """The objective one term asks for, after checking its class, layer, channel and position exist."""
    if term.kind == "class":
        if model.labels is None:
            raise UnsupportedModel(f"model {model.spec.name!r} has no classifier head; use layer, channel or neuron objectives")
        return obj.class_logit(model.class_index(term.class_))
    info = model.layer_info(term.layer, size)
    if term.kind == "layer":
        return obj.layer_mean(term.layer)
    if term.kind == "deepdream":
        return obj.deepdream(term.layer)
    model.check_channel(term.layer, term.channel, size)
    if term.kind == "channel":
        return obj.channel(term.layer, term.channel)
    if len(info.shape) != 3:
        raise InvalidParams(f"layer {term.layer!r} outputs a vector; use kind 'channel' for its units")
    height, width = info.shape[1:]
    if (term.y is not None and term.y >= height) or (term.x is not None and term.x >= width):
        raise InvalidParams(f"layer {term.layer!r} is {height}x{width} at this size; neuron ({term.y}, {term.x}) is outside")
    return obj.neuron(term.layer, term.channel, term.y, term.x)


def yosinski_regularizers(params: ClassVisualizationParams, mean: torch.Tensor):
    """The step hook applying blur and the two pixel-clipping regularisers to the pixel tensor."""

    def reset_below(image: torch.Tensor, score: torch.Tensor, percentile: float) -> None:
        threshold = torch.quantile(score.flatten(), percentile / 100)
        image.copy_(torch.where(score < threshold, mean, image))

    def hook(step: int, tensors: list[torch.Tensor]) -> None:
        image = tensors[0]
        if params.blur_every and step % params.blur_every == 0:
            kernel = 2 * int(3 * params.blur_sigma + 0.5) + 1
            image.copy_(gaussian_blur(image, [kernel, kernel], [params.blur_sigma, params.blur_sigma]))
        if params.clip_norm_percentile:
            reset_below(image, (image - mean).norm(dim=1, keepdim=True), params.clip_norm_percentile)
        if params.clip_contribution_percentile and image.grad is not None:
            contribution = ((image - mean) * image.grad).sum(1, keepdim=True).abs()
            reset_below(image, contribution, params.clip_contribution_percentile)

    return hook


@method(
    "class_visualization",
    summary="Synthesise the image a class, layer, channel or neuron responds to most",
    category="synthesise",
    params=ClassVisualizationParams,
    inputs=(),
    inline=False,
)
def class_visualization(model: ConvLensModel, inputs, params: ClassVisualizationParams, progress) -> Result:
    """Synthesise the image maximising the weighted objectives (Simonyan et al. 2014; Yosinski et al. 2015)."""
    size = (params.size, params.size)
    terms = [(term, term_objective(model, term, size)) for term in params.objectives]
    mean = model.mean_colour()
    objective = sum((term.weight * objective for term, objective in terms), obj.l2(mean) * params.l2)
    generator = torch.Generator().manual_seed(params.seed)
    transforms = []
    if params.pad:
        transforms.append(pad(params.pad))
    if params.jitter:
        transforms.append(jitter(params.jitter, generator))
    if params.scale:
        transforms.append(random_scale([1 + params.scale * (i - 4) / 4 for i in range(9)], generator))
    if params.rotate:
        transforms.append(random_rotate([params.rotate * (i - 4) / 4 for i in range(9)], generator))
    rendered = render(
        model,
        pixels(start_image(params.init, size, model, generator)),
        objective,
        params.steps,
        optimizer="adam",
        lr=params.lr,
        transforms=transforms,
        step_hook=yosinski_regularizers(params, mean),
        progress=progress,
        preview_every=params.preview_every,
    )
    data = {"objective": objective.name}
    if model.labels is not None:
        with torch.inference_mode():
            probs = model(rendered.image).softmax(-1)[0]
        top = probs.topk(5)
        data["top"] = [
            {"index": int(i), "label": model.labels[int(i)], "probability": float(p)}
            for p, i in zip(top.values.tolist(), top.indices.tolist())
        ]
        data["target_probabilities"] = {
            model.labels[i]: float(probs[i])
            for i in dict.fromkeys(model.class_index(t.class_) for t, _ in terms if t.kind == "class")
        }
    return synthesis_result(rendered, data)
