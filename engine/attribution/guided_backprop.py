"""Guided backprop (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806) and
deconvnet (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901).

One implementation: the gradient of a target with respect to the pixels,
taken through a traced copy of the network whose ReLUs carry the method's
backward rule (see :mod:`engine.relu_rules`). The target is a class score or
one unit of any layer: a channel (its mean or max over positions) or a single
neuron at (y, x). Layer targets need no classifier, so they work on vgg19.
"""

from collections.abc import Mapping
from typing import Literal

import torch
from pydantic import Field, model_validator

from engine.models.folding import folded
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result, gradient_picture
from engine.attribution.targets import UnitTarget, class_target, requested_class, row_scores
from engine.attribution.timing import Stopwatch
from engine.errors import UnsupportedModel
from engine.params import RARE
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.registry import Batching, method
from engine.capabilities import LAYERS, RELU_RULES
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.relu_rules import Rule, rule_copy, run_until_node
from engine.result import Result


class ReluRuleParams(AttributionParams):
    layer: str | None = Field(None, description="explain one unit of this layer instead of a class score")
    channel: int | None = Field(None, ge=0, le=65535, description="channel of `layer` to explain")
    neuron: tuple[int, int] | None = Field(
        None, description="(y, x) of a single neuron of the channel; default: the whole channel"
    )
    reduce: Literal["mean", "max"] = Field("mean", description="how a whole channel becomes one score", json_schema_extra=RARE)
    sign: Literal["absolute", "positive"] = Field(
        "absolute", description="map = max over RGB of |gradient| (absolute) or of its positive part"
    )

    @model_validator(mode="after")
    def _one_target(self):
        if self.layer is not None and self.target_class is not None:
            raise ValueError("give either target_class or layer + channel, not both")
        if self.layer is None and (self.channel is not None or self.neuron is not None):
            raise ValueError("channel and neuron need a layer")
        return self

    def check_call(self, model: ModelProfile, counts: Mapping[str, int]) -> None:
        super().check_call(model, counts)
        if self.layer is not None:
            UnitTarget.checked(model, self.layer, self.channel, self.neuron, self.reduce, model.input_size)


def relu_rule_gradient(
    model: ConvLensModel, x: torch.Tensor, rule: Rule, index: int | None = None, unit: UnitTarget | None = None
) -> tuple[torch.Tensor, dict]:
    """(gradient (1, 3, H, W) under ``rule``, target description) for a class or a unit."""
    if unit is None:
        grad, (target,) = relu_rule_class_gradients(model, x, rule, [index])
        return grad, target
    copy = rule_copy(model, rule)  # layer outputs need the unfolded graph
    xg = x.detach().clone().requires_grad_(True)
    nodes = copy.module_outputs.get(f"net.{unit.layer}", [])
    if len(nodes) != 1:
        raise UnsupportedModel(f"layer {unit.layer!r} runs {len(nodes)} times in one forward pass; its output is ambiguous")
    score = unit.score(run_until_node(copy, nodes[0], xg))
    (grad,) = torch.autograd.grad(score, xg)
    return grad, unit.as_dict(float(score.detach()))


def relu_rule_class_gradients(model: ConvLensModel, x: torch.Tensor, rule: Rule, indices: list[int | None]) -> tuple[torch.Tensor, list[dict]]:
    """Gradients (N, 3, H, W) under ``rule`` of each picture's (row's) class score (None: its top-1), and each target."""
    copy = rule_copy(folded(model), rule)
    xg = x.detach().clone().requires_grad_(True)
    logits = copy.module(xg)
    score, chosen = row_scores(logits, indices)
    (grad,) = torch.autograd.grad(score, xg)
    return grad, [class_target(model, logits[row : row + 1], index) for row, index in enumerate(chosen)]


def _answer(model: ConvLensModel, name: str, image, g: torch.Tensor, params: ReluRuleParams, target: dict, laps: dict) -> Result:
    values = (g.abs() if params.sign == "absolute" else g.clamp(min=0)).amax(0)
    return attribution_result(
        model, name, image, values.cpu().numpy(), params, target, params.sign, laps,
        layer=params.layer,
        images={"gradient": gradient_picture(g)},
        arrays={"input_gradient": g.cpu().numpy().astype("float32")},
        main="gradient",
    )


def _runs(rule: Rule, name: str):
    """The method's run, and its batch run for class targets (a unit target runs alone)."""

    def run_batch(model: ConvLensModel, calls: list[tuple[dict, ReluRuleParams]]) -> list[Result]:
        indices = [requested_class(model, params.target_class) for _inputs, params in calls]
        images = [model.fit_input(inputs["image"], params.fit) for inputs, params in calls]
        clock = Stopwatch()
        grad, targets = relu_rule_class_gradients(model, torch.cat([to_tensor(image, model.device) for image in images]), rule, indices)
        clock.lap("attribution_ms")
        return [_answer(model, name, image, grad[row], params, targets[row], clock.laps)
                for row, (image, (_inputs, params)) in enumerate(zip(images, calls))]

    def run(model: ConvLensModel, inputs, params: ReluRuleParams, progress) -> Result:
        if params.layer is None:
            return run_batch(model, [(inputs, params)])[0]
        image = model.fit_input(inputs["image"], params.fit)
        unit = UnitTarget.checked(model, params.layer, params.channel, params.neuron, params.reduce, model.input_size)
        clock = Stopwatch()
        grad, target = relu_rule_gradient(model, to_tensor(image, model.device), rule, unit=unit)
        clock.lap("attribution_ms")
        return _answer(model, name, image, grad[0], params, target, clock.laps)

    return run, run_batch


def relu_rule_cost(model: ModelProfile, params: ReluRuleParams, images: int) -> Cost:
    """One forward and one backward pass (through the rule copy, stopped at the layer for a unit)."""
    return gradient_cost(model, model.input_size, 2, 1, "")


for _rule, _name, _compare, _summary in (
    ("guided", "guided_backprop", True, "Gradient through ReLUs that pass only positive signal where the unit was on (Springenberg et al. 2015)"),
    ("deconv", "deconvnet", False, "Deconvnet reconstruction: gradient with ReLUs applied to the backward signal (Zeiler & Fergus 2014)"),
):
    _single, _batch = _runs(_rule, _name)
    method(_name, summary=_summary, category="attribute", params=ReluRuleParams, cost=relu_rule_cost,
           requires=(RELU_RULES, LAYERS), evaluable=True, compare=_compare,
           batching=Batching(key=lambda params: () if params.layer is None else None, run=_batch))(_single)
