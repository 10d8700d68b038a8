"""Measure class-visualisation recipes: for each recipe, render several ImageNet classes
on efficientnet_lite0 (one batch, one class per image: the same recipe as one call per
class up to the random transform draws) and report efficientnet_lite0's and the
independent judge's (efficientnet_lite1) probability and rank of each target.

    .venv/bin/python bench/class_vis_recipes.py --recipes fourier fourier:standard pixels --steps 200

A recipe is a parameterisation, optionally with the transform set, (fourier) the
spectrum decay and the natural-statistics prior's weight after colons
(``fourier:standard``, ``fourier:strong:1.0``, ``fourier:strong:1.5:100``); alone it
takes the parameterisation's defaults.
"""

import argparse
import json
import time

import torch

from engine.models import load_model
from engine.models.judge import judge
from engine.optim import objectives as obj
from engine.optim.params import start_image
from engine.synthesis.class_visualization import (
    RECIPE_DEFAULTS, SPECTRUM_DECAY, ClassVisualizationParams, natural_statistics_weight, visualize,
)

CLASSES = ["goldfinch", "flamingo", "tarantula", "lemon", "pizza", "volcano", "jellyfish", "king penguin", "monarch", "daisy"]


def measure(model, classes: list[str], params: ClassVisualizationParams) -> dict:
    indices = [model.class_index(c) for c in classes]
    l2 = params.l2 if params.l2 is not None else RECIPE_DEFAULTS[params.parameterization][0]
    objective = obj.class_logit(indices) + l2 * obj.l2(model.mean_colour())
    batch = params.model_copy(update={"facets": len(indices), "preview_every": 0})
    # pixels: every image starts where one call per class would (a batch of facets would start from noise)
    size = (params.size, params.size)
    first = start_image(params.init, size, model, torch.Generator().manual_seed(params.seed)) if params.parameterization == "pixels" else None
    start = time.perf_counter()
    images = visualize(model, batch, objective, first).image
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        own = model(images).softmax(-1)
    rows = []
    for k, (name, index) in enumerate(zip(classes, indices)):
        verdict = judge(images[k : k + 1], index)[0]
        rows.append({"class": name, "own": float(own[k, index]), "judge": verdict["probability"], "rank": verdict["rank"], "judge_top1": verdict["top1"]})
    return {
        "recipe": f"{params.parameterization}:{params.transforms or RECIPE_DEFAULTS[params.parameterization][2]}"
        + (f":{params.spectrum_decay or SPECTRUM_DECAY:g}" if params.parameterization == "fourier" else "")
        + (f":{natural:g}" if (natural := natural_statistics_weight(model, params, None)) else ""),
        "steps": params.steps,
        "seed": params.seed,
        "seconds_per_step": seconds / params.steps,
        "judge_top1": sum(r["rank"] == 1 for r in rows),
        "mean_judge": sum(r["judge"] for r in rows) / len(rows),
        "min_own": min(r["own"] for r in rows),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipes", nargs="+", default=["fourier", "fourier:standard", "maco", "pixels"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--classes", nargs="+", default=CLASSES)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0, help="the params' seed (phases, noise, transform draws)")
    parser.add_argument("--threads", type=int, help="torch threads (results repeat only at the same count)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model("efficientnet_lite0", "cpu")
    for recipe in args.recipes:
        parameterization, _, rest = recipe.partition(":")
        transforms, _, rest = rest.partition(":")
        decay, _, natural = rest.partition(":")
        extra = {"spectrum_decay": float(decay)} if decay else {}
        if natural:
            extra["natural_statistics"] = float(natural)
        params = ClassVisualizationParams(parameterization=parameterization, transforms=transforms or None, steps=args.steps, size=args.size,
                                          seed=args.seed, **extra)
        print(json.dumps(measure(model, args.classes, params)), flush=True)


if __name__ == "__main__":
    main()
