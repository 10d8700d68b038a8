"""Guided backprop (Springenberg et al. 2015, https://arxiv.org/abs/1412.6806) and
deconvnet (Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901).

One implementation: the gradient of a target with respect to the pixels,
taken through a traced copy of the network whose ReLUs carry the method's
backward rule (see :mod:`engine.relu_rules`). The target is a class score or
one unit of any layer: a channel (its mean or max over positions) or a single
neuron at (y, x). Layer targets need no classifier, so they work on vgg19.
"""

from typing import Literal

import torch
from pydantic import Field, model_validator

from engine.models.folding import folded
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result, gradient_picture
from engine.attribution.targets import UnitTarget, class_target, pick_class, requested_class
from engine.attribution.timing import Stopwatch
from engine.errors import UnsupportedModel
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.registry import method
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
    reduce: Literal["mean", "max"] = Field("mean", description="how a whole channel becomes one score")
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


def relu_rule_gradient(
    model: ConvLensModel, x: torch.Tensor, rule: Rule, index: int | None = None, unit: UnitTarget | None = None
) -> tuple[torch.Tensor, dict]:
    """(gradient (1, 3, H, W) under ``rule``, target description) for a class or a unit."""
    copy = rule_copy(folded(model) if unit is None else model, rule)  # layer outputs need the unfolded graph
    xg = x.detach().clone().requires_grad_(True)
    if unit is None:
        logits = copy.module(xg)
        index = pick_class(logits, index)
        (grad,) = torch.autograd.grad(logits[0, index], xg)
        return grad, class_target(model, logits, index)
    nodes = copy.module_outputs.get(f"net.{unit.layer}", [])
    if len(nodes) != 1:
        raise UnsupportedModel(f"layer {unit.layer!r} runs {len(nodes)} times in one forward pass; its output is ambiguous")
    score = unit.score(run_until_node(copy, nodes[0], xg))
    (grad,) = torch.autograd.grad(score, xg)
    return grad, unit.as_dict(float(score.detach()))


def _run(rule: Rule, name: str):
    def run(model: ConvLensModel, inputs, params: ReluRuleParams, progress) -> Result:
        image = model.fit_input(inputs["image"], params.fit)
        unit, index = None, None
        if params.layer is not None:
            unit = UnitTarget.checked(model, params.layer, params.channel, params.neuron, params.reduce, model.input_size)
        else:
            index = requested_class(model, params.target_class)
        clock = Stopwatch()
        grad, target = relu_rule_gradient(model, to_tensor(image, model.device), rule, index, unit)
        clock.lap("attribution_ms")
        g = grad[0]
        values = (g.abs() if params.sign == "absolute" else g.clamp(min=0)).amax(0)
        return attribution_result(
            model, name, image, values.cpu().numpy(), params, target, params.sign, clock.laps,
            layer=params.layer,
            images={"gradient": gradient_picture(g)},
            arrays={"input_gradient": g.cpu().numpy().astype("float32")},
            main="gradient",
        )

    return run


def relu_rule_cost(model: ModelProfile, params: ReluRuleParams, images: int) -> Cost:
    """One forward and one backward pass (through the rule copy, stopped at the layer for a unit)."""
    return gradient_cost(model, model.input_size, 2, 1, "")


for _rule, _name, _compare, _summary in (
    ("guided", "guided_backprop", True, "Gradient through ReLUs that pass only positive signal where the unit was on (Springenberg et al. 2015)"),
    ("deconv", "deconvnet", False, "Deconvnet reconstruction: gradient with ReLUs applied to the backward signal (Zeiler & Fergus 2014)"),
):
    method(_name, summary=_summary, category="attribute", params=ReluRuleParams, cost=relu_rule_cost,
           requires=(RELU_RULES, LAYERS), evaluable=True, compare=_compare)(_run(_rule, _name))
