"""``evaluate_attribution``: how far each attribution method can be trusted, on given pictures.

For each method and picture: its runtime; model-parameter randomisation (Adebayo et
al. 2018): the Spearman rank correlation and SSIM between the map on the trained
network and on copies randomised layer group by layer group from the top
(cascading) and one group at a time (independent): a map that explains the model
must decorrelate; deletion and insertion AUC (Petsiuk et al. 2018) against a
random map's. Everything runs on deep copies at a small input size; the served
model is only read.
"""

import dataclasses
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from engine import params as p
from engine.capabilities import CLASSIFIER, LAYERS
from engine.attribution.evaluation.faithfulness import area, curves
from engine.attribution.evaluation.plots import plot_series
from engine.attribution.evaluation.randomisation import cascading, estimated_group_count, evaluation_copy, independent
from engine.attribution.timing import Stopwatch
from engine.errors import InvalidParams
from engine.imaging import fit_image, tile_grid, to_tensor
from engine.models import ConvLensModel
from engine.params import ClassTargeted, Seeded, Sized
from engine.cost import Cost, gradient_cost
from engine.models.profile import ModelProfile
from engine.registry import InputSlot, evaluable_methods, get_method, method, parse_params
from engine.result import Result

def _list_evaluable(schema: dict) -> None:
    """The JSON schema of ``methods`` lists what is evaluable when it is made (every method is registered by then)."""
    schema["items"] = {"type": "string", "enum": evaluable_methods()}


class EvaluateAttributionParams(Sized, ClassTargeted, Seeded):
    methods: list[str] = Field(
        default_factory=lambda: ["saliency", "gradcam", "guided_backprop", "integrated_gradients", "occlusion"],
        min_length=1, max_length=16, json_schema_extra=_list_evaluable,
        description="attribution methods to evaluate (those that declare themselves evaluable)",
    )
    method_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-method params, e.g. {\"integrated_gradients\": {\"steps\": 16}}"
    )
    size: int = p.size(128, high=224, what=" (smaller is cheaper)")
    randomization: Literal["cascading", "independent", "both", "none"] = Field("cascading", description="which randomization tests to run")
    faithfulness: bool = Field(True, description="deletion and insertion curves and AUC")
    deletion_steps: int = Field(16, ge=2, le=64, description="fractions of patches deleted / inserted, 0..1")
    patch: int = Field(8, ge=1, le=64, description="side of the square patches deleted / inserted together (1: single pixels)")

    @field_validator("methods")
    @classmethod
    def _distinct_and_evaluable(cls, methods):
        if len(set(methods)) != len(methods):
            raise ValueError("a method is listed twice")
        unknown = [name for name in methods if name not in evaluable_methods()]
        if unknown:
            raise ValueError(f"{', '.join(unknown)} cannot be evaluated; evaluable: {', '.join(evaluable_methods())}")
        return methods


def _similarity(trained: np.ndarray, other: np.ndarray) -> dict[str, float]:
    def unit(v):
        low, high = float(v.min()), float(v.max())
        return (v - low) / (high - low) if high > low else np.zeros_like(v)

    rho = spearmanr(trained.ravel(), other.ravel()).statistic
    return {
        "spearman": float(0.0 if np.isnan(rho) else rho),
        "ssim": float(structural_similarity(unit(trained), unit(other), data_range=1.0)),
    }


class _Runner:
    """Runs one registered attribution method on a (copied) model and returns its raw map."""

    def __init__(self, name: str, overrides: dict[str, Any]):
        self.method = get_method(name)
        self.overrides = {k: v for k, v in overrides.items() if k != "target_class"}
        parse_params(self.method, self.overrides)  # refuse bad params before any work

    def __call__(self, model: ConvLensModel, image, index: int):
        params = parse_params(self.method, {**self.overrides, "target_class": index})
        result = self.method.run(model, {"image": image}, params, lambda *a, **k: None)
        return result.arrays["map"], result.images["heatmap"]


def evaluate_cost(model: ModelProfile, params: EvaluateAttributionParams, images: int) -> Cost:
    """Per picture: its class, each method's own passes on the trained model and again at every randomization stage
    (one per parameter group, from the layer catalogue), and each map's (and a random map's) deletion and insertion curves."""
    at_size = ModelProfile(dataclasses.replace(model.spec, input_size=(params.size, params.size)), model.layers)
    methods = sum(get_method(name).estimate(at_size, parse_params(get_method(name), {**params.method_params.get(name, {})}), 1).passes
                  for name in params.methods)
    stages = {"both": 2, "none": 0}.get(params.randomization, 1) * estimated_group_count(model.catalogue())
    curves = (len(params.methods) + 1) * 2 * (params.deletion_steps + 1) if params.faithfulness else 0
    per_picture = 1 + methods * (1 + stages) + curves
    return gradient_cost(at_size, at_size.input_size, per_picture * max(images, 1), 1, "lower randomization, deletion_steps, size or methods")


@method(
    "evaluate_attribution",
    summary="Sanity checks (parameter randomisation) and faithfulness (deletion/insertion AUC) of attribution methods",
    category="attribute",
    params=EvaluateAttributionParams,
    inputs=(InputSlot("images", "pictures to evaluate the methods on", many=True, min_count=1, max_count=8),),
    inline=False,
    requires=(CLASSIFIER, LAYERS,),
    cost=evaluate_cost,
)
def evaluate_attribution(model: ConvLensModel, inputs, params: EvaluateAttributionParams, progress) -> Result:
    unknown = sorted(set(params.method_params) - set(params.methods))
    if unknown:
        raise InvalidParams(f"method_params names methods not evaluated: {', '.join(unknown)}")
    runners = {name: _Runner(name, params.method_params.get(name, {})) for name in params.methods}
    fixed = model.class_index(params.target_class) if params.target_class is not None else None
    size = (params.size, params.size)
    trained = evaluation_copy(model, size)
    pictures = [fit_image(image, size, "stretch") for image in inputs["images"]]
    modes = {"both": ("cascading", "independent"), "none": ()}.get(params.randomization, (params.randomization,))
    table = {name: {"runtime_ms": [], "deletion_auc": [], "insertion_auc": [], **{m: [] for m in modes}} for name in runners}
    reference = {"deletion_auc": [], "insertion_auc": []}
    curves_of, stage_maps = {}, {name: [] for name in runners}
    total, done = len(pictures) * len(runners), 0
    for p, picture in enumerate(pictures):
        x = to_tensor(picture, trained.device)
        with torch.inference_mode():
            index = fixed if fixed is not None else int(trained(x)[0].argmax())
        maps = {}
        for name, run in runners.items():
            clock = Stopwatch()
            maps[name], heat = run(trained, picture, index)
            clock.lap("ms")
            table[name]["runtime_ms"].append(clock.laps["ms"])
            if p == 0:
                stage_maps[name].append(heat)
        if params.faithfulness:
            random_map = np.random.default_rng(params.seed + p).random(maps[params.methods[0]].shape).astype(np.float32)
            for name, values in {**maps, "random": random_map}.items():
                found = curves(trained, x, index, values, params.deletion_steps, params.seed, params.patch)
                target = reference if name == "random" else table[name]
                target["deletion_auc"].append(area(found["deletion"]))
                target["insertion_auc"].append(area(found["insertion"]))
                if p == 0:
                    curves_of[name] = found
        for mode in modes:
            stages = cascading(model, size, params.seed) if mode == "cascading" else independent(model, size, params.seed)
            per_stage = {name: [] for name in runners}
            for group, randomised in stages:
                for name, run in runners.items():
                    values, heat = run(randomised, picture, index)
                    per_stage[name].append({"layer": group, **_similarity(maps[name], values)})
                    if p == 0 and mode == "cascading":
                        stage_maps[name].append(heat)
            for name in runners:
                table[name][mode].append(per_stage[name])
        done += len(runners)
        progress(done, total)
    summary = {}
    for name, row in table.items():
        entry = {"runtime_ms": float(np.mean(row["runtime_ms"]))}
        if params.faithfulness:
            entry["deletion_auc"] = float(np.mean(row["deletion_auc"]))
            entry["insertion_auc"] = float(np.mean(row["insertion_auc"]))
        for mode in modes:
            runs = row[mode]
            entry[mode] = [
                {
                    "layer": stage["layer"],
                    "spearman": float(np.mean([run[k]["spearman"] for run in runs])),
                    "ssim": float(np.mean([run[k]["ssim"] for run in runs])),
                }
                for k, stage in enumerate(runs[0])
            ]
        entry["per_image"] = {key: value for key, value in row.items() if key not in modes}
        summary[name] = entry
    data = {"methods": summary, "size": params.size, "images": len(pictures), "randomization": params.randomization}
    images = {}
    if params.faithfulness:
        data["random_map"] = {key: float(np.mean(v)) for key, v in reference.items()}
        for kind in ("deletion", "insertion"):
            images[f"{kind}_curves"] = plot_series(
                {name: c[kind] for name, c in curves_of.items()},
                f"{kind}: target probability (first picture)", "fraction of pixels, 0 -> 1", (0.0, 1.0),
            )
    for mode in modes:
        images[f"{mode}_randomisation"] = plot_series(
            {name: [s["spearman"] for s in summary[name][mode]] for name in runners},
            f"{mode} randomisation: Spearman rank correlation with the trained map",
            "randomised group, output -> input", (-0.2, 1.0),
        )
    if "cascading" in modes:
        tiles = np.stack([np.asarray(h.resize((64, 64))) for name in runners for h in stage_maps[name]])
        images["cascading_maps"] = tile_grid(tiles, columns=len(stage_maps[params.methods[0]]))
    return Result(images=images, data=data, main=next(iter(images), None))
