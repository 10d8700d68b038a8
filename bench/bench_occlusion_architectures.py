"""Occlusion on ONNX copies of other architectures: ours vs brute force vs Captum, side by side in one run.

torchvision's ``convnext_tiny`` (LayerNorm and an MLP over channels between
permutes) and ``shufflenet_v2_x0_5`` (channel split, concat and shuffle),
random weights (speed only: never presented as pretrained), exported to ONNX
(legacy exporter, opset 17) and read back by :func:`engine.models.formats.onnx_network`.
224 px skimage chelsea, window 32, stride 16, fill 0.5, the top class.
- ours: ``occlusion_drops`` with the ``auto`` strategy (asserted to be the receptive-field plan);
- brute force: ``occlusion_drops`` with ``brute_force`` (every occluded picture through the whole network);
- Captum ``Occlusion`` with ``perturbations_per_eval`` equal to our batch.
Contenders alternate order each round after a warm-up; medians are compared
(ratio > 1: ours is faster) and the maps checked to agree. ``--clock cpu
--threads 1`` times by the process's CPU time on one thread, which moves far
less than wall time on a machine busy with other work. Every contender runs
under the malloc tuning of the service's processes (``--malloc kept``,
worker/allocator.py); ``--malloc default`` keeps glibc's own, under which brute
force spends much of its time in page faults.

    PYTHONPATH=. .venv/bin/python bench/bench_occlusion_architectures.py [--repeats 3] [--batch 16] [--clock wall|cpu] [--threads N] \
        [--malloc kept|default]
"""

import argparse
import io
import os
import statistics
import time
import warnings

import torch
import torchvision
from captum.attr import Occlusion
from PIL import Image
from skimage import data

from engine.attribution.occlusion import occlusion_drops
from engine.imaging import fit_image, to_tensor
from engine.models import ConvLensModel, ModelSpec, Preprocessing
from engine.models.formats import onnx_network
from worker.allocator import keep_freed_memory
from worker.settings import Settings

SIZE = 224
TARGETS = {"convnext_tiny": 2.0}  # Captum / ours, issue 24
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def add_malloc_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--malloc", choices=["kept", "default"], default="kept",
                        help="kept: freed memory kept for the next tensors, as the service runs (worker/allocator.py); default: glibc's")


def use_malloc(choice: str) -> str:
    """Apply ``--malloc``; returns what this process runs with, for the header line."""
    return "kept" if choice == "kept" and keep_freed_memory(Settings().malloc_keep_bytes) else "default"


def onnx_copy(name: str) -> ConvLensModel:
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, SIZE, SIZE),), buffer, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}})
    spec = ModelSpec(
        name=f"{name}-onnx-bench", description="random weights, speed only", build=lambda: None,
        preprocessing=Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)), input_size=(SIZE, SIZE),
        first_conv="", labels=tuple(str(i) for i in range(1000)), default_layer="",
    )
    return ConvLensModel(spec, onnx_network(buffer.getvalue()))


def rounds(contenders: dict, repeats: int, clock) -> tuple[dict, dict]:
    """Each contender's times over ``repeats`` rounds (alternating order, after a warm-up; the GPU's queued
    work included) and its last output."""
    outputs = {name: fn() for name, fn in contenders.items()}  # warm-up (traces, caches, allocator)
    times = {name: [] for name in contenders}
    for i in range(repeats):
        order = list(contenders.items())
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = clock()
            outputs[name] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(clock() - start)
    return times, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--architectures", nargs="+", default=["convnext_tiny", "shufflenet_v2_x0_5"])
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time, or the process's CPU time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    add_malloc_option(parser)
    args = parser.parse_args()
    malloc = use_malloc(args.malloc)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]
    x = to_tensor(fit_image(Image.fromarray(data.chelsea()), (SIZE, SIZE)))
    fill = (0.5, 0.5, 0.5)
    baseline = torch.tensor(fill).view(1, 3, 1, 1).expand_as(x).clone()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, malloc {malloc}, "
          f"load average {os.getloadavg()[0]:.2f}, {SIZE}px chelsea, window 32, stride 16, batch {args.batch}")

    for name in args.architectures:
        model = onnx_copy(name)
        with torch.inference_mode():
            target = int(model(x).argmax())

        def ours(strategy, model=model, target=target):
            found = occlusion_drops(model, x, target, 32, 16, fill, args.batch, strategy)
            assert found["strategy"] == {"auto": "receptive_field", "brute_force": "brute_force"}[strategy]
            return found["maps"]["probability"]

        def captum(model=model, target=target):
            with torch.inference_mode():
                return Occlusion(lambda batch: model(batch).softmax(-1)[:, target]).attribute(
                    x, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16), baselines=baseline,
                    perturbations_per_eval=args.batch,
                )[0, 0]

        times, out = rounds({"ours": lambda: ours("auto"), "brute": lambda: ours("brute_force"), "captum": captum},
                            args.repeats, clock)
        medians = {contender: statistics.median(ts) for contender, ts in times.items()}
        for peer in ("brute", "captum"):  # probabilities: within 1e-5 of the scale 1
            assert torch.allclose(out["ours"], out[peer], atol=1e-5, rtol=0), float((out["ours"] - out[peer]).abs().max())
        ratio = medians["captum"] / medians["ours"]
        print(f"{name:20s} ours {medians['ours']:7.2f} s   brute force {medians['brute']:7.2f} s   captum {medians['captum']:7.2f} s   "
              f"brute/ours {medians['brute'] / medians['ours']:5.2f}x   captum/ours {ratio:5.2f}x")
        if name in TARGETS:
            print(f"{name:20s} {ratio:5.2f}x  {'meets' if ratio >= TARGETS[name] else 'MISSES'} the >= {TARGETS[name]}x target (Captum / ours)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
