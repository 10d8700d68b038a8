"""Registered-model speed: the ONNX copy of EfficientNet-Lite0 against the built-in, and against Captum.

The built-in network is exported to ONNX (legacy exporter, opset 17), read back
through :mod:`engine.models.formats` (onnx2torch -> torch.fx) and validated and
vetted exactly as ``POST /v1/models`` vets it (in this process, not a child), minus HTTP and storage.
- saliency, guided backprop: the whole inline method (``engine.run.run_method``,
  224 px chelsea) on the copy vs on the built-in; ratio = copy / built-in
  (target <= 1.2x).
- occlusion: window 32, stride 16, mean fill, on the copy: ours
  (receptive-field recomputation) vs Captum ``Occlusion`` with
  ``perturbations_per_eval`` equal to our batch; ratio = Captum / ours (target >= 2x);
  ours on the built-in runs in the same rounds, to show the copy keeps its plan.
Contenders alternate order each round after a warm-up; medians are compared and
the outputs checked to agree. ``--clock cpu --threads 1`` times each call by the
process's CPU time on one thread instead of wall time: on a machine busy with
other work that ratio moves far less than the wall-clock one.

    PYTHONPATH=. .venv/bin/python bench/bench_registered_models.py [--repeats 5] [--occlusion-repeats 3] [--batch 16] [--occlusion-only] [--clock wall|cpu] [--threads N]
"""

import argparse
import io
import os
import statistics
import time
import warnings

import numpy as np
import torch
from captum.attr import Occlusion
from PIL import Image
from skimage import data

from engine.attribution.occlusion import occlusion_drops
from engine.imaging import fit_image, to_tensor
from engine.models import load_model, register_model
from engine.models.formats import load_network
from engine.models.registered import ModelMetadata, spec_from_metadata
from engine.models.vetting import vet
from engine.run import run_method
from worker.model_vetting import VettingLimits
from worker.settings import Settings

CLASS = 285  # Egyptian cat
COPY = "lite0-onnx-bench"


def onnx_copy(builtin) -> str:
    """The built-in exported to ONNX, vetted as registration vets it (in this process), known to the zoo by name."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(builtin.net, (torch.zeros(1, 3, 224, 224),), buffer, dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}})
    meta = {"name": COPY, "preprocessing": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "input_size": [224, 224], "labels": "imagenet"}
    vetted = vet(buffer.getvalue(), meta, VettingLimits.from_settings(Settings()).model)
    net = load_network(vetted.onnx, "onnx")
    register_model(spec_from_metadata(ModelMetadata.model_validate(vetted.metadata), "onnx", lambda: net, "bench", "bench", vetted))
    return COPY


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def rounds(contenders: dict, repeats: int, clock=time.perf_counter) -> tuple[dict, dict]:
    outputs = {name: fn() for name, fn in contenders.items()}  # warm-up
    times = {name: [] for name in contenders}
    for i in range(repeats):
        order = list(contenders.items())
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = clock()
            outputs[name] = fn()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--occlusion-repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--occlusion-only", action="store_true")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="wall time, or the process's CPU time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = CLOCKS[args.clock]

    builtin = load_model("efficientnet_lite0", "cpu")
    copy = load_model(onnx_copy(builtin), "cpu")
    image = fit_image(Image.fromarray(data.chelsea()), builtin.input_size)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, load average {os.getloadavg()[0]:.2f}, "
          "efficientnet_lite0 224px vs its ONNX copy, chelsea")

    verdicts = []
    for method in () if args.occlusion_only else ("saliency", "guided_backprop"):
        medians, out = rounds({
            "builtin": lambda m=method: run_method(m, "efficientnet_lite0", {"image": image}, {"target_class": CLASS}),
            "onnx": lambda m=method: run_method(m, COPY, {"image": image}, {"target_class": CLASS}),
        }, args.repeats, clock)
        a, b = out["onnx"].arrays["map"], out["builtin"].arrays["map"]
        assert np.allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(b).max()), float(np.abs(a - b).max())
        ratio = medians["onnx"] / medians["builtin"]
        print(f"{method:16s} built-in {medians['builtin'] * 1000:7.0f} ms   onnx copy {medians['onnx'] * 1000:7.0f} ms   copy/built-in {ratio:5.2f}x")
        verdicts.append((method, ratio, ratio <= 1.2, "<= 1.2x (copy / built-in)"))

    x = to_tensor(image)
    fill = tuple(copy.mean_colour().flatten().tolist())
    baseline = torch.tensor(fill).view(1, 3, 1, 1).expand_as(x).clone()

    def probability(batch):
        return copy(batch).softmax(-1)[:, CLASS]

    def captum():
        with torch.inference_mode():
            return Occlusion(probability).attribute(x, sliding_window_shapes=(3, 32, 32), strides=(3, 16, 16),
                                                    baselines=baseline, perturbations_per_eval=args.batch)[0, 0]

    def ours(model):
        found = occlusion_drops(model, x, CLASS, 32, 16, fill, args.batch)
        assert found["strategy"] == "receptive_field"
        return found["maps"]["probability"]

    contenders = {"ours": lambda: ours(copy), "captum": captum, "builtin": lambda: ours(builtin)}
    medians, out = rounds(contenders, args.occlusion_repeats, clock)
    print(f"{'occlusion':16s} built-in {medians['builtin'] * 1000:7.0f} ms   onnx copy {medians['ours'] * 1000:7.0f} ms   "
          f"copy/built-in {medians['ours'] / medians['builtin']:5.2f}x (same receptive-field plan)")
    bound = 1e-4 * float(out["captum"].abs().max())
    assert torch.allclose(out["ours"], out["captum"], atol=bound, rtol=1e-4), float((out["ours"] - out["captum"]).abs().max())
    ratio = medians["captum"] / medians["ours"]
    print(f"{'occlusion':16s} ours {medians['ours'] * 1000:7.0f} ms   captum {medians['captum'] * 1000:7.0f} ms   captum/ours {ratio:5.2f}x (onnx copy)")
    verdicts.append(("occlusion", ratio, ratio >= 2.0, ">= 2x (Captum / ours, on the copy)"))
    for name, ratio, ok, target in verdicts:
        print(f"{name:16s} {ratio:5.2f}x  {'meets' if ok else 'MISSES'} the {target} target")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
