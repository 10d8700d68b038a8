"""Class visualisation per step at 224 px: ConvLens's default recipe vs Lucent's ``render_vis``
with its default Fourier + decorrelated parameterisation and standard transforms, on the same
network (efficientnet_lite0), side by side in one process; both pictures scored by the judge.
Lucent is handed the served network, as a user would hand it; ours runs class objectives on its
folded channels-last twin (engine/models/twin.py), and ``--lucent-on-twin`` hands Lucent that too.

    /work/main/.venv/bin/pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 decorator ipython traitlets
    PYTHONPATH=. .venv/bin/python bench/bench_class_vis.py --steps 200 --classes flamingo goldfinch
    PYTHONPATH=. .venv/bin/python bench/bench_class_vis.py --natural-statistics 0 --average 0  # other settings of ours
    PYTHONPATH=. .venv/bin/python bench/bench_class_vis.py --lucent-on-twin  # Lucent also on the network ours runs on
"""

import argparse
import copy
import time

import torch

from engine.models import ConvLensModel, load_model
from engine.models.judge import judge
from engine.models.twin import ascent_twin
from engine.optim import objectives as obj
from engine.synthesis.class_visualization import RECIPE_DEFAULTS, ClassVisualizationParams, visualize


def ours(model: ConvLensModel, index: int, steps: int, **options) -> tuple[float, float, float]:
    params = ClassVisualizationParams(steps=steps, preview_every=0, **options)
    start = time.perf_counter()
    picture = visualize(model, params, obj.class_logit(index)).image  # the default recipe (its l2 weight is 0)
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        own = float(model(picture).softmax(-1)[0, index])
    return seconds / steps, judge(picture, index)[0]["probability"], own


def lucent(model: ConvLensModel, index: int, steps: int, network: torch.nn.Module | None = None) -> tuple[float, float, float]:
    from lucent.optvis import param, render

    # Lucent's hooks are never removed: give it its own copy of the network (by default the served one).
    net = ConvLensModel(model.spec, copy.deepcopy(network if network is not None else model.net)).eval()
    start = time.perf_counter()
    images = render.render_vis(
        net, f"net_classifier:{index}", lambda: param.image(224, fft=True, decorrelate=True),
        thresholds=(steps,), show_image=False, progress=False, preprocess=False,  # the model normalises itself
    )
    seconds = time.perf_counter() - start
    picture = torch.from_numpy(images[-1]).permute(0, 3, 1, 2).float()
    with torch.inference_mode():
        own = float(model(picture).softmax(-1)[0, index])
    return seconds / steps, judge(picture, index)[0]["probability"], own


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--classes", nargs="+", default=["flamingo"])
    parser.add_argument("--natural-statistics", type=float, help="our natural_statistics weight (default: the param's)")
    parser.add_argument("--average", type=float, help="our average decay (default: the param's)")
    parser.add_argument("--lucent-on-twin", action="store_true",
                        help="also run Lucent on the folded channels-last twin our class objectives run on")
    args = parser.parse_args()
    model = load_model("efficientnet_lite0", "cpu")
    assert RECIPE_DEFAULTS[ClassVisualizationParams().parameterization][0] == 0.0  # no L2 term to add
    judge(torch.rand(1, 3, 224, 224), 0)  # load the judge before any timing
    for label in args.classes:
        index = model.class_index(label)
        torch.manual_seed(0)
        options = {k: v for k, v in (("natural_statistics", args.natural_statistics), ("average", args.average)) if v is not None}
        ours_step, ours_judge, ours_own = ours(model, index, args.steps, **options)
        torch.manual_seed(0)
        theirs_step, theirs_judge, theirs_own = lucent(model, index, args.steps)
        print(
            f"{label}: {args.steps} steps | ours {ours_step * 1000:.0f} ms/step, judge p={ours_judge:.3f}, lite0 p={ours_own:.3f}"
            f" | lucent {theirs_step * 1000:.0f} ms/step, judge p={theirs_judge:.3f}, lite0 p={theirs_own:.3f}"
            f" | per-step ratio lucent/ours {theirs_step / ours_step:.2f}x",
            flush=True,
        )
        if args.lucent_on_twin:
            torch.manual_seed(0)
            twin_step, twin_judge, _ = lucent(model, index, args.steps, ascent_twin(model).model.net)
            print(f"{label}: lucent on our twin {twin_step * 1000:.0f} ms/step, judge p={twin_judge:.3f}"
                  f" | per-step ratio lucent on the twin/ours {twin_step / ours_step:.2f}x", flush=True)


if __name__ == "__main__":
    main()
