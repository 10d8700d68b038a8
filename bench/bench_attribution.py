"""Attribution speed: ConvLens vs Captum, side by side in one process, same model and input.

EfficientNet-Lite0, 224 px, skimage's chelsea, class "Egyptian cat".
- saliency: |gradient| max over RGB; Captum ``Saliency(abs=True)``.
- guided backprop: Captum only hooks ``nn.ReLU`` modules, so both run on a copy
  of EfficientNet-Lite0 whose ReLU6 modules are plain ``nn.ReLU`` (same cost;
  on the real ReLU6 network Captum would silently return the vanilla gradient).
- occlusion: window 32, stride 16, mean fill, target probability; Captum
  ``Occlusion`` with ``perturbations_per_eval`` equal to our batch size.
Each round runs every contender once, in alternating order, after a warm-up;
the medians are compared (ratio = Captum time / ours, > 1 means we are faster;
the ratio of the fastest runs is printed too, as it is the least disturbed by
other processes on a shared CPU) and the outputs are checked to agree.

    PYTHONPATH=. .venv/bin/python bench/bench_attribution.py [--repeats 5] [--occlusion-repeats 3] [--batch 16]
"""

import argparse
import copy
import statistics
import time

import torch
from captum.attr import GuidedBackprop, Occlusion, Saliency
from PIL import Image
from skimage import data
from torch import nn

from engine.attribution.channels_last import channels_last_forward
from engine.attribution.gradients import class_gradient
from engine.attribution.guided_backprop import relu_rule_gradient
from engine.attribution.occlusion import occlusion_drops
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


def timed(fn):
    """Seconds ``fn`` takes (the GPU's queued work included) and what it returns."""
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def compare(name: str, ours, theirs, repeats: int, check) -> float:
    ours(), theirs()  # warm-up (traces, caches, allocator)
    times = {"ours": [], "captum": []}
    for i in range(repeats):
        order = [("ours", ours), ("captum", theirs)]
        for label, fn in order if i % 2 == 0 else order[::-1]:
            seconds, out = timed(fn)
            times[label].append(seconds)
            if label == "ours":
                mine = out
            else:
                peer = out
    check(mine, peer)
    ours_s, captum_s = statistics.median(times["ours"]), statistics.median(times["captum"])
    best = min(times["captum"]) / min(times["ours"])
    spread = lambda ts: f"{min(ts) * 1000:7.0f}..{max(ts) * 1000:7.0f}"  # noqa: E731
    print(
        f"{name:16s} ours {ours_s * 1000:7.0f} ms [{spread(times['ours'])}]   "
        f"captum {captum_s * 1000:7.0f} ms [{spread(times['captum'])}]   "
        f"ratio {captum_s / ours_s:5.2f}x (best-of {best:5.2f}x)"
    )
    return captum_s / ours_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--occlusion-repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="occlusion batch (ours) = perturbations_per_eval (Captum)")
    args = parser.parse_args()

    model = load_model("efficientnet_lite0", args.device)
    x = to_tensor(fit_image(Image.fromarray(data.chelsea()), model.input_size), model.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, efficientnet_lite0 224px, chelsea")

    def saliency_ours():
        grad, _, _ = class_gradient(channels_last_forward(model), x, CLASS)
        return grad[0].abs().amax(0)

    def saliency_captum():
        return Saliency(model).attribute(x.clone(), target=CLASS, abs=True)[0].amax(0)

    def same(tolerance):
        """Equal up to float rounding (ours folds batch norms into convs), relative to the map's peak."""

        def check(a, b):
            bound = tolerance * float(b.abs().max())
            assert torch.allclose(a, b, atol=bound, rtol=1e-4), float((a - b).abs().max())

        return check

    ratios = {"saliency": compare("saliency", saliency_ours, saliency_captum, args.repeats, same(1e-5))}

    relu_model = relu_copy(model)
    ratios["guided_backprop"] = compare(
        "guided_backprop",
        lambda: relu_rule_gradient(relu_model, x, "guided", index=CLASS)[0],
        lambda: GuidedBackprop(relu_model).attribute(x.clone(), target=CLASS),
        args.repeats,
        same(1e-5),
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

    ratios["occlusion"] = compare(
        "occlusion",
        lambda: occlusion_drops(model, x, CLASS, 32, 16, fill, args.batch)["maps"]["probability"],
        occlusion_captum,
        args.occlusion_repeats,
        same(1e-4),
    )
    targets = {"saliency": 1.0, "guided_backprop": 1.0, "occlusion": 1.3}
    for name, ratio in ratios.items():
        verdict = "meets" if ratio >= targets[name] else "MISSES"
        print(f"{name:16s} {ratio:5.2f}x  {verdict} the {targets[name]}x target")


if __name__ == "__main__":
    main()
