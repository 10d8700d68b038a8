"""Attribution speed: ConvLens vs Captum, side by side in one process, same model and input.

EfficientNet-Lite0, 224 px, skimage's chelsea, class "Egyptian cat".
- saliency: |gradient| max over RGB; Captum ``Saliency(abs=True)``.
- guided backprop: Captum only hooks ``nn.ReLU`` modules, so both run on a copy
  of EfficientNet-Lite0 whose ReLU6 modules are plain ``nn.ReLU`` (same cost;
  on the real ReLU6 network Captum would silently return the vanilla gradient).
- occlusion: window 32, stride 16, mean fill, target probability; Captum
  ``Occlusion`` with ``perturbations_per_eval`` equal to our batch size. Ours
  runs exact (the receptive-field plan, checked equal to Captum) and
  approximate (the ``approximate`` strategy at each ``--coarse-steps``, its
  map's deviation from the exact one printed next to the deviation it reports).
Each round runs every contender once, in alternating order, after a warm-up;
the medians are compared (ratio = Captum time / ours, > 1 means we are faster;
the ratio of the fastest runs is printed too, as it is the least disturbed by
other processes on a shared CPU) and the outputs are checked to agree.
``--clock cpu --threads 1`` times by the process's CPU time on one thread,
which moves far less than wall time on a machine busy with other work.
Both contenders run with the malloc tuning the service's processes use
(``--malloc kept``, worker/allocator.py); ``--malloc default`` keeps glibc's
own, under which brute force spends most of its time in page faults.

    PYTHONPATH=. .venv/bin/python bench/bench_attribution.py [--repeats 5] [--occlusion-repeats 3] [--batch 16] \
        [--clock wall|cpu] [--threads N] [--coarse-steps 2 3] [--occlusion-only] [--malloc kept|default]
"""

import argparse
import copy
import os
import statistics

import torch
from captum.attr import GuidedBackprop, Occlusion, Saliency
from PIL import Image
from skimage import data
from torch import nn

from engine.attribution.channels_last import channels_last_forward
from engine.attribution.gradients import class_gradient
from engine.attribution.guided_backprop import relu_rule_gradient
from bench.bench_occlusion_architectures import CLOCKS, add_malloc_option, rounds, use_malloc
from engine.attribution.occlusion import occlusion_drops
from engine.attribution.occlusion_approximate import Approximation
from engine.imaging import fit_image, to_tensor
from engine.models import ConvLensModel, load_model

CLASS = 285  # Egyptian cat


def relu_copy(model: ConvLensModel) -> ConvLensModel:
    net = copy.deepcopy(model.net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(module, name, nn.ReLU())
    return ConvLensModel(model.spec, net)


def compare(name: str, ours, theirs, repeats: int, check, clock) -> float:
    times, out = rounds({"ours": ours, "captum": theirs}, repeats, clock)
    check(out["ours"], out["captum"])
    return report(name, times["ours"], times["captum"])


def report(name: str, ours: list[float], captum: list[float]) -> float:
    """Print the medians, spreads and ratios (Captum / ours); return the ratio of medians."""
    ours_s, captum_s = statistics.median(ours), statistics.median(captum)
    spread = lambda ts: f"{min(ts) * 1000:7.0f}..{max(ts) * 1000:7.0f}"  # noqa: E731
    print(
        f"{name:24s} ours {ours_s * 1000:7.0f} ms [{spread(ours)}]   "
        f"captum {captum_s * 1000:7.0f} ms [{spread(captum)}]   "
        f"ratio {captum_s / ours_s:5.2f}x (best-of {min(captum) / min(ours):5.2f}x)"
    )
    return captum_s / ours_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--occlusion-repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="occlusion batch (ours) = perturbations_per_eval (Captum)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time, or the process's CPU time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--coarse-steps", type=int, nargs="*", default=[2, 3], help="approximate occlusion's coarse_step, one contender each")
    parser.add_argument("--occlusion-only", action="store_true")
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = use_malloc(args.malloc)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]

    model = load_model("efficientnet_lite0", args.device)
    x = to_tensor(fit_image(Image.fromarray(data.chelsea()), model.input_size), model.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, malloc {malloc}, "
          f"load average {os.getloadavg()[0]:.2f}, efficientnet_lite0 224px, chelsea")

    def saliency_ours():
        grad, _, _ = class_gradient(channels_last_forward(model), x, CLASS)
        return grad[0].abs().amax(0)

    def saliency_captum():
        return Saliency(model).attribute(x.clone(), target=CLASS, abs=True)[0].amax(0)

    def same(tolerance):
        """Equal up to float rounding (ours folds batch norms into convs), relative to the map's peak."""

        def check(a, b):
            bound = tolerance * float(b.abs().max())
            assert torch.allclose(a, b, atol=bound, rtol=1e-4), f"differs by {float((a - b).abs().max()) / float(b.abs().max()):.2e} of the peak"

        return check

    ratios, targets = {}, {"saliency": 1.0, "guided_backprop": 1.0, "occlusion": 6.0}
    if not args.occlusion_only:
        # channels-last rounding flips a few ReLU6 gates on some pictures: up to 3.5e-4 of the peak on chelsea here (AVX2)
        ratios["saliency"] = compare("saliency", saliency_ours, saliency_captum, args.repeats, same(1e-3), clock)
        relu_model = relu_copy(model)
        ratios["guided_backprop"] = compare(
            "guided_backprop",
            lambda: relu_rule_gradient(relu_model, x, "guided", index=CLASS)[0],
            lambda: GuidedBackprop(relu_model).attribute(x.clone(), target=CLASS),
            args.repeats,
            same(1e-4),  # folded batch norms: a gate within rounding of its threshold may flip (engine/models/folding.py)
            clock,
        )

    fill = tuple(model.mean_colour().flatten().tolist())
    baseline = torch.tensor(fill).view(1, 3, 1, 1).expand_as(x).clone()

    def probability(batch):
        return model(batch).softmax(-1)[:, CLASS]

    def occlusion_captum():
        with torch.inference_mode():
            attr = Occlusion(probability).attribute(
                x, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=baseline,
                perturbations_per_eval=args.batch,
            )
        return attr[0, 0]

    def occlusion_ours(strategy="auto", approximation=Approximation()):
        return occlusion_drops(model, x, CLASS, 32, 16, fill, args.batch, strategy, approximation=approximation)

    contenders = {"occlusion": occlusion_ours, "captum": occlusion_captum}
    for step in args.coarse_steps:
        contenders[f"occlusion approximate {step}"] = lambda step=step: occlusion_ours("approximate", Approximation(step))
    times, out = rounds(contenders, args.occlusion_repeats, clock)
    exact = out["occlusion"]["maps"]["probability"]
    same(1e-4)(exact, out["captum"])
    ratios["occlusion"] = report("occlusion", times["occlusion"], times["captum"])
    peak = float(exact.abs().max())
    for step in args.coarse_steps:
        name = f"occlusion approximate {step}"
        targets[name] = 20.0
        ratios[name] = report(name, times[name], times["captum"])
        found = out[name]
        error = (found["maps"]["probability"] - exact).abs()
        holds = "holds" if float(error.max()) <= found["max_deviation"]["probability"] else "UNDERSTATES the real one"
        print(
            f"{'':24s} {found['windows_computed']} of {found['windows']} windows computed; probability map vs exact: "
            f"max {float(error.max()):.4f} ({float(error.max()) / peak:.0%} of the peak {peak:.4f}), "
            f"mean {float(error.mean()):.4f} ({float(error.mean()) / peak:.1%}); reported: max {found['max_deviation']['probability']:.4f}, "
            f"mean {found['mean_deviation']['probability']:.4f} (from {found['deviation_samples']} samples): the max reported {holds}"
        )
    for name, ratio in ratios.items():
        verdict = "meets" if ratio >= targets[name] else "MISSES"
        print(f"{name:24s} {ratio:5.2f}x  {verdict} the {targets[name]}x target")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
