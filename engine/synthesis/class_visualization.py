"""Class visualisation: the image a network scores highest for a class, layer,
channel or neuron.

Gradient ascent on the weighted objectives through one of three image
parameterisations: ``fourier`` (1/f^1.5-scaled spectrum, decorrelated colour,
Lucid's transformation-robustness set; Olah et al. 2017,
https://distill.pub/2017/feature-visualization/), ``maco`` (phase only, natural
amplitude; Fel et al. 2023) or ``pixels`` (the earlier recipe: class score minus
an L2 penalty, Simonyan et al. 2014, https://arxiv.org/abs/1312.6034, with
Yosinski et al.'s blur and pixel clipping, 2015, https://arxiv.org/abs/1506.06579).
``natural_statistics`` adds a prior keeping every batch norm's input statistics as
in training (Yin et al. 2020's DeepInversion, per image; on by default for fourier
from scratch); ``average`` returns the moving average of the steps' image parameters
(Polyak and Juditsky 1992; on by default for fourier and maco from scratch).
``facets`` > 1 renders a batch pushed apart by a diversity term, started from
the cluster means of ``examples`` when given (Nguyen et al. 2016's multifaceted
visualisation, :mod:`engine.synthesis.facet_starts`); ``center_bias`` asks for
the target in the middle (after Nguyen et al. 2016). Given an
``image``, the method accentuates it instead (starts from the photo and stays
close to it). Every class result is scored by an independent judge network
(:mod:`engine.models.judge`).
"""

from collections.abc import Mapping
from typing import Annotated, Callable, Literal

import numpy as np
import torch
from torch import nn
from pydantic import Field, model_validator
from torchvision.transforms.v2.functional import gaussian_blur

from engine import params as p
from engine.capabilities import RESIZABLE
from engine.errors import InvalidParams, UnsupportedModel
from engine.models import ConvLensModel
from engine.models.layer_roles import role_layers
from engine.models.units import check_channel, check_neuron, feature_map_info, named_layer, naming
from engine.registry import InputSlot
from engine.optim import objectives as obj
from engine.optim.loop import ImageParam, Rendered, StepHook, render
from engine.imaging import fit_image, tile_grid, to_image, to_tensor
from engine.models.judge import judge
from engine.models.twin import ascent_twin
from engine.optim.params import Start, pixels, start_image
from engine.optim.report import synthesis_result
from engine.optim.spectral import fourier, maco
from engine.synthesis.facet_starts import cluster_means
from engine.inspect.collection import MAX_IMAGES
from engine.optim.transforms import ROBUSTNESS_SETS, centre_zoom, jitter, pad, random_rotate, random_scale, robustness_transforms
from engine.progress import Progress, no_progress
from engine.params import Params, Seeded, Sized
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import method
from engine.result import Result


class ObjectiveTerm(Params):
    """One weighted term of the objective (maximized)."""

    kind: Literal["class", "layer", "channel", "neuron", "deepdream"] = Field(
        "class",
        description="class: unnormalised class score; layer: mean activation of a layer; channel: mean of one "
        "channel; neuron: one channel at one position; deepdream: mean squared activation of a layer",
    )
    target_class: int | str | None = Field(None, description="kind class: the class, as an index or a label (case-insensitive)")
    layer: str | None = Field(None, description="layer name from the model's catalogue (all kinds but class)")
    channel: int | None = Field(None, ge=0, description="channel index (kind=channel or neuron)")
    neuron: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]] | None = Field(
        None, description="kind neuron: [y, x] in the layer's feature map; default: its center")
    weight: float = Field(1.0, ge=-100, le=100, description="weight of this term in the sum")

    @model_validator(mode="after")
    def _needs(self):
        if self.kind == "class" and self.target_class is None:
            raise ValueError("kind 'class' needs 'target_class'")
        if self.kind != "class" and not self.layer:
            raise ValueError(f"kind {self.kind!r} needs 'layer'")
        if self.kind in ("channel", "neuron") and self.channel is None:
            raise ValueError(f"kind {self.kind!r} needs 'channel'")
        return self


Parameterization = Literal["fourier", "maco", "pixels"]
# The layer whose Gram matrices the diversity term pushes apart, and the term's weight, when unset. On
# efficientnet_lite0 the last stage but one, weight 3: three facets at 224 px differed by 0.40-0.49 in
# penultimate-feature cosine distance (0.10-0.34 at blocks.4, weight 1; 0.11-0.22 without the term), each
# keeping the class above 0.99 (bench/README.md); vgg19 a mid-level layer, as in Lucid. Other networks:
# their default layer, weight 1.
DIVERSITY_WEIGHT = {"efficientnet_lite0": 3.0}
# What each parameterisation uses when a knob is left unset: (l2, blur_every, transforms).
RECIPE_DEFAULTS = {"pixels": (2.0, 4, "custom"), "fourier": (0.0, 0, "strong"), "maco": (0.0, 0, "strong")}
# fourier's amplitude decay when spectrum_decay is unset: 1/f^1.5 from scratch (the judge measurement,
# bench/class_vis_recipes.py); Lucid's 1/f from a picture (a photo to accentuate, or example images).
SPECTRUM_DECAY, SPECTRUM_DECAY_FROM_PICTURE = 1.5, 1.0
# the average's decay when it is unset, for fourier and maco from scratch, and the natural-statistics
# prior's weight, for fourier from scratch on a network with batch norms (the judge measurements)
AVERAGE_DECAY, NATURAL_STATISTICS = 0.95, 100.0


class ClassVisualizationParams(Sized, Seeded):
    objectives: list[ObjectiveTerm] | None = Field(
        None,
        min_length=1,
        max_length=8,
        description="weighted terms to maximise together; default: the class 'flamingo' on an ImageNet classifier, "
        "another classifier's first class, a network without classes its dream layer (deepdream)",
        json_schema_extra=p.group("target"),
    )
    parameterization: Parameterization = Field(
        "fourier",
        description="fourier (default, chosen by the judge measurement in bench/class_vis_recipes.py): 1/f-scaled "
        "spectrum in decorrelated colour (Olah et al. 2017); maco: phase only, natural amplitude (Fel et al. 2023); "
        "pixels: the pixels themselves with Yosinski et al.'s regularisers",
    )
    decorrelate: bool = Field(True, description="optimise in a decorrelated colour space (fourier and maco)",
                              json_schema_extra=p.RARE)
    spectrum_decay: float | None = Field(
        None, ge=0.5, le=3, description="fourier: each frequency's amplitude scales as 1/f^decay (1: Lucid's); default 1.5 "
        "(chosen by the judge measurement: smoother pictures the judge recognises more often), 1 when starting from a "
        "picture (a photo to accentuate, or example images)", json_schema_extra=p.RARE,
    )
    size: int = p.size(224, high=512, what=" (the image made)")
    steps: int = p.steps(200)
    lr: float = p.lr(0.05, "the image's parameters (Fourier or MaCo coefficients; pixels in [0, 1] for the pixel parameterization)")
    facets: int = Field(1, ge=1, le=8, description="render this many images at once, pushed apart by the diversity term")
    diversity: float | None = Field(None, ge=0, le=100, description="weight of the diversity term when facets > 1; default 3 "
                                    "on efficientnet_lite0 (measured), 1 elsewhere", json_schema_extra=p.RARE)
    diversity_layer: str | None = Field(None, description="layer whose Gram matrices must differ; default: blocks.6 on "
                                        "efficientnet_lite0, block4_conv1 on vgg19, a registered model's next-to-last stage (its layer_roles)",
                                        json_schema_extra=p.RARE)
    natural_statistics: float | None = Field(
        None, ge=0, le=1000, description="weight of the prior keeping every batch norm's input distributed as in "
        "training (Yin et al. 2020's DeepInversion, per image); default 100 for fourier from scratch (with the default "
        "average it raised the judge's mean probability over ten classes from 0.53 to 0.75, three seeds; "
        "bench/README.md), 0 for maco, pixels and any start from a picture; networks without batch norms (vgg19, "
        "registered models whose norms were folded) go without it, and the result reports the weight applied",
        json_schema_extra=p.RARE,
    )
    average: float | None = Field(
        None, ge=0, lt=1, description="return the exponential moving average of the image parameters over the steps, "
        "with this decay per step (Polyak averaging; 0: the last step's picture); default 0.95 for fourier and maco from "
        "scratch (the judge ranked the target first for 38 of 40 classes over four seeds against 36 without, at no cost "
        "per step; bench/README.md), 0 for pixels and for any start from a picture", json_schema_extra=p.RARE,
    )
    center_bias: bool = Field(False, description="the target must show in random centered crops (after Nguyen et al. 2016)")
    transforms: Literal["strong", "standard", "custom"] | None = Field(
        None, description="standard: Lucid's pad/jitter/scale/rotate set; strong: the same at twice the strength; custom: "
        "the jitter, pad, scale and rotate params below; default: strong for fourier and maco, custom for pixels",
        json_schema_extra=p.RARE,
    )
    init: Start = Field("mean", description="pixels only: start from black (zeros), the dataset-mean colour, or mean plus noise "
                        "(several facets always start from independent noise)", json_schema_extra=p.RARE)
    l2: float | None = Field(None, ge=0, le=100, description="weight of the penalty on mean squared distance from the mean colour "
                             "(or from the photo when accentuating); default 2 for pixels, 0 otherwise (1 when accentuating)",
                             json_schema_extra=p.RARE)
    jitter: int = Field(8, ge=0, le=64, description="custom transforms: random shift (pixels, each direction) every step",
                        json_schema_extra=p.RARE)
    pad: int = Field(8, ge=0, le=64, description="custom transforms: reflect-pad by this many pixels first",
                     json_schema_extra=p.RARE)
    scale: float = Field(0.1, ge=0, le=0.5, description="custom transforms: random rescaling by up to this fraction (0: off)",
                         json_schema_extra=p.RARE)
    rotate: float = Field(5.0, ge=0, le=45, description="custom transforms: random rotation by up to this many degrees (0: off)",
                          json_schema_extra=p.RARE)
    blur_every: int | None = Field(None, ge=0, le=100, description="pixels only: Gaussian-blur every k steps (0: off); default 4",
                                   json_schema_extra=p.RARE)
    blur_sigma: float = Field(0.5, ge=0.1, le=5, description="blur standard deviation, in pixels", json_schema_extra=p.RARE)
    clip_norm_percentile: float = Field(0.0, ge=0, le=100, description="pixels only: reset pixels whose norm is below this percentile to the mean colour (0: off)",
                                        json_schema_extra=p.RARE)
    clip_contribution_percentile: float = Field(
        0.0, ge=0, le=100, description="pixels only: reset pixels whose contribution |x * grad| is below this percentile (0: off)",
        json_schema_extra=p.RARE
    )
    judge: bool = Field(True, description="score class targets with the independent judge network", json_schema_extra=p.RARE)
    preview_every: int = p.preview_every(10)

    @model_validator(mode="after")
    def _pixel_only(self):
        if self.parameterization != "pixels" and (
            self.blur_every or self.clip_norm_percentile or self.clip_contribution_percentile
        ):
            raise ValueError("blur and pixel clipping apply to the pixels parameterisation only")
        return self

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        size = (self.size, self.size)
        for position, term in enumerate(self.objectives or ()):
            check_term(model, term, position, size)
        if self.diversity_layer is not None:
            diversity_layer(model, self, size)


def default_objectives(model: ConvLensModel) -> list[ObjectiveTerm]:
    """What to visualise when the call names nothing: a class the model knows, else its dream layer."""
    labels = model.labels
    if labels is None:
        return [ObjectiveTerm(kind="deepdream", layer=role_layers(model, "dream")[0])]
    return [ObjectiveTerm(kind="class", target_class="flamingo" if "flamingo" in labels else 0)]


def check_term(model: ConvLensModel | ModelProfile, term: ObjectiveTerm, position: int, size: tuple[int, int]) -> int | None:
    """Check that the class, layer, channel and position the ``position``-th term names exist (errors name
    ``objectives[i].<field>``); returns its class index (None for a layer term). On a profile, whose maps are
    at the native size, a neuron's position is checked only when ``size`` is the native one."""
    field = f"objectives[{position}]"
    if term.kind == "class":
        if model.labels is None:
            raise UnsupportedModel(f"{field}: model {model.spec.name!r} has no classifier head; use layer, channel or neuron objectives")
        with naming(f"{field}.target_class"):
            return model.class_index(term.target_class)
    info = named_layer(model, term.layer, f"{field}.layer", size)
    if term.kind in ("channel", "neuron"):
        with naming(f"{field}.channel"):
            check_channel(info, term.channel)
    if term.kind == "neuron":
        with naming(f"{field}.layer"):
            feature_map_info(info)
        with naming(f"{field}.neuron"):
            check_neuron(info, term.neuron, spatial=isinstance(model, ConvLensModel) or tuple(size) == tuple(model.input_size))
    return None


def term_objective(model: ConvLensModel, term: ObjectiveTerm, position: int, size: tuple[int, int]) -> obj.Objective:
    """The objective the ``position``-th term asks for, after :func:`check_term`."""
    index = check_term(model, term, position, size)
    if term.kind == "class":
        return obj.class_logit(index)
    if term.kind == "layer":
        return obj.layer_mean(term.layer)
    if term.kind == "deepdream":
        return obj.deepdream(term.layer)
    if term.kind == "channel":
        return obj.channel(term.layer, term.channel)
    y, x = term.neuron or (None, None)
    return obj.neuron(term.layer, term.channel, y, x)


def diversity_layer(model: ConvLensModel | ModelProfile, params: "ClassVisualizationParams", size: tuple[int, int]) -> str:
    """The layer whose Gram matrices the facets push apart (``diversity_layer``, else the model's diversity role)."""
    layer = params.diversity_layer or role_layers(model, "diversity")[0]
    named_layer(model, layer, "diversity_layer", size)
    return layer


def yosinski_regularizers(params: ClassVisualizationParams, mean: torch.Tensor, blur_every: int):
    """The step hook applying blur and the two pixel-clipping regularisers to the pixel tensor."""

    def reset_below(image: torch.Tensor, score: torch.Tensor, percentile: float) -> None:
        threshold = torch.quantile(score.flatten(), percentile / 100)
        image.copy_(torch.where(score < threshold, mean, image))

    def hook(step: int, tensors: list[torch.Tensor]) -> None:
        image = tensors[0]
        if blur_every and step % blur_every == 0:
            kernel = 2 * int(3 * params.blur_sigma + 0.5) + 1
            image.copy_(gaussian_blur(image, [kernel, kernel], [params.blur_sigma, params.blur_sigma]))
        if params.clip_norm_percentile:
            reset_below(image, (image - mean).norm(dim=1, keepdim=True), params.clip_norm_percentile)
        if params.clip_contribution_percentile and image.grad is not None:
            contribution = ((image - mean) * image.grad).sum(1, keepdim=True).abs()
            reset_below(image, contribution, params.clip_contribution_percentile)

    return hook


def image_param(model: ConvLensModel, params: ClassVisualizationParams, start: torch.Tensor | None, generator):
    """The parameterisation, started from ``start`` (one picture, or one per facet) when given."""
    size, device = (params.size, params.size), model.device
    if params.parameterization == "fourier":
        return fourier(size, params.facets, decorrelate=params.decorrelate, generator=generator, device=device, init=start,
                       decay=params.spectrum_decay or (SPECTRUM_DECAY if start is None else SPECTRUM_DECAY_FROM_PICTURE))
    if params.parameterization == "maco":
        if start is not None:
            raise InvalidParams("maco fixes the amplitude spectrum, so it cannot start from a photo or from example "
                                "images; use fourier or pixels")
        return maco(size, params.facets, params.decorrelate, generator, device)
    if start is not None:
        return pixels(start.expand(params.facets, -1, -1, -1))
    kind = "noise" if params.facets > 1 else params.init  # identical starts would stay identical facets
    return pixels(torch.cat([start_image(kind, size, model, generator) for _ in range(params.facets)]))


def robustness(params: ClassVisualizationParams, kind: str, generator) -> list:
    if kind in ROBUSTNESS_SETS:
        chosen = robustness_transforms(kind, generator)
    else:
        chosen = []
        if params.pad:
            chosen.append(pad(params.pad))
        if params.jitter:
            chosen.append(jitter(params.jitter, generator))
        if params.scale:
            chosen.append(random_scale([1 + params.scale * (i - 4) / 4 for i in range(9)], generator))
        if params.rotate:
            chosen.append(random_rotate([params.rotate * (i - 4) / 4 for i in range(9)], generator))
    if params.center_bias:
        chosen.append(centre_zoom(0.6, generator))
    return chosen


def class_report(model: ConvLensModel, images: torch.Tensor, classes: list[int], with_judge: bool) -> dict:
    """The network's own top-5 and target probabilities, and the judge's verdict, for each facet."""
    with torch.inference_mode():
        probs = model(images).softmax(-1)
    facets = []
    for row, image in zip(probs, images):
        facet = {
            "top": model.top_classes(row, 5),
            "target_probabilities": {model.labels[i]: float(row[i]) for i in classes},
        }
        if with_judge and classes:
            facet["judge"] = {model.labels[i]: judge(image[None], i)[0] for i in classes}
        facets.append(facet)
    return {**facets[0], "facets": facets}


def averaged(param: ImageParam, decay: float, then: StepHook | None = None) -> tuple[StepHook, Callable[[], None]]:
    """A step hook keeping the exponential moving average of ``param``'s tensors (after ``then``), and a
    function that puts the average in their place (Polyak and Juditsky 1992)."""
    shadow = [t.detach().clone() for t in param.params]

    def hook(step: int, tensors: list[torch.Tensor]) -> None:
        if then is not None:
            then(step, tensors)
        for mean, value in zip(shadow, tensors):
            mean.lerp_(value, 1 - decay)

    def settle() -> None:
        with torch.no_grad():
            for value, mean in zip(param.params, shadow):
                value.copy_(mean)

    return hook, settle


def average_decay(params: ClassVisualizationParams, start: torch.Tensor | None) -> float:
    """The moving average's decay the run applies: the param's, else the default from scratch (0 for pixels)."""
    if params.average is not None:
        return params.average
    return AVERAGE_DECAY if start is None and params.parameterization != "pixels" else 0.0


def natural_statistics_weight(model: ConvLensModel, params: ClassVisualizationParams, start: torch.Tensor | None) -> float:
    """The prior's weight the run applies: the param's, else the default for fourier from scratch; 0 on
    a network without batch norms."""
    if not batch_norms(model):
        return 0.0
    if params.natural_statistics is not None:
        return params.natural_statistics
    return NATURAL_STATISTICS if start is None and params.parameterization == "fourier" else 0.0


def batch_norms(model: ConvLensModel) -> dict[str, nn.BatchNorm2d]:
    """The network's 2-d batch norms that keep running statistics, by layer name."""
    return {name: m for name, m in model.layers.items() if isinstance(m, nn.BatchNorm2d) and m.running_var is not None}


def visualize(
    model: ConvLensModel, params: ClassVisualizationParams, objective: obj.Objective,
    start: torch.Tensor | None = None, progress: Progress = no_progress, closeness: float = 0.0,
) -> Rendered:
    """The recipe ``params`` names (parameterisation, transforms, regularisers), run on ``objective``;
    with a ``start`` (one picture, or one per facet), begin there and add ``closeness`` times the
    mean squared distance to it (measured on the picture itself, before the random transforms). The
    natural-statistics prior, when asked for, is added here, as part of the recipe. An objective on
    the network's output alone runs on the model's faster twin (:mod:`engine.models.twin`)."""
    generator = torch.Generator().manual_seed(params.seed)
    param = image_param(model, params, start, generator)
    if start is not None and closeness > 0:
        near = obj.Objective(lambda f, x: (param.image_fn() - start).pow(2).mean(), (), "l2(photo)")
        objective = objective + closeness * near
    twin = ascent_twin(model) if objective.layers <= {obj.OUTPUT} else None
    if natural := natural_statistics_weight(model, params, start):
        objective = objective + natural * obj.natural_statistics(batch_norms(model), twin.folded_norms if twin else {})
    _, default_blur, default_transforms = RECIPE_DEFAULTS[params.parameterization]
    blur_every = params.blur_every if params.blur_every is not None else default_blur
    hook = yosinski_regularizers(params, model.mean_colour(), blur_every) if params.parameterization == "pixels" else None
    if decay := average_decay(params, start):
        hook, settle = averaged(param, decay, hook)
    rendered = render(
        twin.model if twin else model,
        param,
        objective,
        params.steps,
        optimizer="adam",
        lr=params.lr,
        transforms=robustness(params, params.transforms or default_transforms, generator),
        step_hook=hook,
        progress=progress,
        preview_every=params.preview_every,
    )
    if decay:
        settle()
        with torch.no_grad():
            rendered.image = param.image_fn().detach().clone()
    return rendered


def class_visualization_cost(model: ModelProfile, params: ClassVisualizationParams, images: int) -> Cost:
    """A forward and a backward pass of every facet per step; the example photos' features once; the result
    scored by the model and by the judge network."""
    facets = params.facets
    return gradient_cost(model, params.run_size(model.input_size), 2 * params.steps * facets + images + 2 * facets, facets,
                         "lower steps, facets or size", pixels=3 * params.size * params.size * facets)


@method(
    "class_visualization",
    summary="Synthesise the image a class, layer, channel or neuron responds to most, or accentuate it in a photo",
    requires=(RESIZABLE,),
    cost=class_visualization_cost,
    category="synthesize",
    params=ClassVisualizationParams,
    inputs=(
        InputSlot("image", "a photo to accentuate the objectives in (feature accentuation)", optional=True),
        InputSlot("examples", "photos of the target (a collection): each facet starts from the mean of one cluster of "
                  "their features (multifaceted visualisation)", many=True, min_count=1, max_count=MAX_IMAGES, optional=True),
    ),
    inline=False,
)
def class_visualization(model: ConvLensModel, inputs, params: ClassVisualizationParams, progress) -> Result:
    """Synthesise (or accentuate) the image maximising the weighted objectives (Olah et al. 2017; Simonyan et al. 2014)."""
    size = (params.size, params.size)
    terms = [(term, term_objective(model, term, k, size)) for k, term in enumerate(params.objectives or default_objectives(model))]
    photo = to_tensor(fit_image(inputs["image"], size, "stretch"), model.device) if inputs.get("image") is not None else None
    examples = inputs.get("examples")
    if photo is not None and examples:
        raise InvalidParams("give either an image to accentuate or example images to start the facets from, not both")
    start = cluster_means(model, examples, params.facets, size, params.seed) if examples else photo
    default_l2 = RECIPE_DEFAULTS[params.parameterization][0]
    l2 = params.l2 if params.l2 is not None else (1.0 if photo is not None else default_l2)
    objective = sum((term.weight * objective for term, objective in terms), obj.l2(model.mean_colour()) * (0.0 if photo is not None else l2))
    weight = params.diversity if params.diversity is not None else DIVERSITY_WEIGHT.get(model.spec.name, 1.0)
    if params.facets > 1 and weight > 0:
        layer = diversity_layer(model, params, size)
        objective = objective + weight * obj.diversity(layer)
    rendered = visualize(model, params, objective, start, progress, closeness=l2 if photo is not None else 0.0)
    data = {"objective": objective.name, "parameterization": params.parameterization, "accentuated": photo is not None,
            "natural_statistics": natural_statistics_weight(model, params, start), "average": average_decay(params, start)}
    if model.labels is not None:
        classes = list(dict.fromkeys(model.class_index(t.target_class) for t, _ in terms if t.kind == "class"))
        data.update(class_report(model, rendered.image, classes, params.judge))
    result = synthesis_result(rendered, data)
    if params.facets > 1:
        facets = [to_image(x) for x in rendered.image]
        result.images["facets"] = tile_grid(np.stack([np.asarray(f) for f in facets]), columns=params.facets)
        result.images.update({f"facet_{k}": facet for k, facet in enumerate(facets)})
    if photo is not None:
        result.images["photo"] = to_image(photo)
    return result
