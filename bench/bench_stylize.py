"""Fast style models against Gatys, and collection embedding against a plain torch loop.

1. Trains one style model (``train_style_model`` on the built-in sample photos,
   the hubble deep field as style), then times ``stylise`` at 256 px for
   several transformer layouts (Johnson's full-resolution one, and
   space-to-depth ones of several widths / depths) and precisions (time does
   not depend on the weights; the held-out style loss is printed for the
   trained one).
2. Gatys (``engine.synthesis.style_transfer.stylise``, L-BFGS) on the same
   held-out picture (scikit-learn's china, not in the training set) and style:
   its time until its 8-bit image reaches the style loss of the fast model's
   output, against one fast forward pass.
3. Embedding the sample collection: ``embed_collection`` (no cache) against a
   plain batched ``torch.inference_mode`` loop over the same network to the
   same layer, images per second.

    python bench/bench_stylize.py                  # the run recorded in bench/README.md
    python bench/bench_stylize.py --train-steps 20 # quick
    python bench/bench_stylize.py --no-space-to-depth --outer-kernel 9  # train Johnson's layout instead
    python bench/bench_stylize.py --model /tmp/style.safetensors  # trains once and saves; later runs load it and only time
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imaging import fit_image, to_tensor  # noqa: E402
from engine.models import ConvLensModel, load_model  # noqa: E402
from engine.run import run_method  # noqa: E402
from engine.synthesis.fast_style import PerceptualLoss, StyleModelConfig, TrainStyleParams, Transformer, build, one_hot, stylise  # noqa: E402
from engine.synthesis.style_transfer import StyleTransferParams  # noqa: E402
from engine.synthesis.style_transfer import stylise as gatys  # noqa: E402
from worker.samples import sample_files  # noqa: E402



class Clock:
    """Wall and process CPU seconds since it was made, less the pauses (work that is not being timed)."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu

    def pause(self, fn):
        before = self.read()
        value = fn()
        after = self.read()
        self.wall, self.cpu = self.wall + after[0] - before[0], self.cpu + after[1] - before[1]
        return value


def median_ms(fns: list, repeats: int) -> list[tuple[float, float]]:
    """Median wall and process CPU milliseconds of each ``fn()``, the contenders taking turns (so a change of load
    hits all of them); CPU time barely moves with other load when --threads 1."""
    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(repeats):
        for fn, found in zip(fns, times):
            clock = Clock()
            fn()
            found.append(clock.read())
    return [(statistics.median(t[0] for t in found) * 1000, statistics.median(t[1] for t in found) * 1000) for found in times]


def style_loss_of(loss: PerceptualLoss, content: torch.Tensor, picture: torch.Tensor) -> float:
    return loss.evaluate(content, picture)[1]


def gatys_until(vgg, loss: PerceptualLoss, content: torch.Tensor, style: Image.Image, target: float, steps: int):
    """Gatys at 256 px until its 8-bit preview's style loss reaches ``target``: (step, (wall, CPU) seconds, style loss).

    Scoring the previews is paused out of the clock (``loss`` holds its own copy of the network: Gatys's hooks are on ``vgg``).
    """
    last = {}

    class Reached(Exception):
        pass

    def progress(step, total, preview=None, **info):
        if preview is not None:
            last.update(step=step, seconds=clock.read(), value=clock.pause(lambda: style_loss_of(loss, content, to_tensor(preview))))
            if last["value"] <= target:
                raise Reached

    clock = Clock()
    try:
        gatys(vgg, content, [to_tensor(fit_image(style, (256, 256), "crop"))], StyleTransferParams(size=256, steps=steps, scales=1, preview_every=1), progress)
    except Reached:
        pass
    return last["step"], last["seconds"], last["value"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--train-size", type=int, default=128)
    defaults = TrainStyleParams()
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--blocks", type=int, default=defaults.residual_blocks)
    parser.add_argument("--space-to-depth", action=argparse.BooleanOptionalAction, default=defaults.space_to_depth)
    parser.add_argument("--outer-kernel", type=int, default=defaults.outer_kernel)
    parser.add_argument("--gatys-steps", type=int, default=300, help="most L-BFGS steps Gatys gets (0: skip it)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores; 1 makes CPU times meaningful under load)")
    parser.add_argument("--model", type=Path, help="trained network: loaded from this file if it exists (its layout wins over the flags), else trained and saved there")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("load average at start: %.2f %.2f %.2f" % os.getloadavg())
    vgg = load_model("vgg19", "cpu")
    photos = [Image.open(p).convert("RGB") for p in sample_files() if p.stem not in ("china", "hubble_deep_field")]
    style = Image.fromarray(data.hubble_deep_field())
    held_out = fit_image(Image.open(next(p for p in sample_files() if p.stem == "china")).convert("RGB"), (256, 256), "crop")

    if args.model and args.model.exists():
        with safe_open(args.model, "pt") as stored:
            metadata = stored.metadata()
        config, tensors = StyleModelConfig.model_validate_json(metadata["config"]), load_file(args.model)
        print(f"loaded {config.model_dump(exclude={'style_names'})} from {args.model} (trained for {metadata['trained']})")
    else:
        start = time.perf_counter()
        layout = {"base_channels": args.width, "residual_blocks": args.blocks, "space_to_depth": args.space_to_depth, "outer_kernel": args.outer_kernel}
        params = {"steps": args.train_steps, "size": args.train_size, "preview_every": 0, **layout}
        trained = run_method("train_style_model", "vgg19", {"content": photos, "style": [style]}, params, device="cpu")
        how = f"{args.train_steps} steps at {args.train_size} px in {time.perf_counter() - start:.0f} s"
        print(f"trained {layout} for {how}")
        config, tensors = StyleModelConfig.model_validate(trained.data["style_model"]), trained.tensors
        if args.model:
            save_file(tensors, args.model, metadata={"config": config.model_dump_json(), "trained": how})
    net = build(config)
    net.load_state_dict(tensors)
    args.width, args.blocks, args.space_to_depth, args.outer_kernel = config.width, config.blocks, config.space_to_depth, config.outer_kernel

    # the loss network of its own: Gatys previews are scored inside its loop (see gatys_until)
    loss = PerceptualLoss(ConvLensModel(vgg.spec, vgg.spec.build()), to_tensor(fit_image(style, (256, 256), "crop")), vgg.spec.layer_roles["content"][0], list(vgg.spec.layer_roles["style"]))
    content = to_tensor(held_out)
    fast_picture = to_tensor(stylise(net, held_out, one_hot(0, 1), 1024))
    fast_content, fast_style = loss.evaluate(content, fast_picture)
    print(f"held-out style loss: photo {style_loss_of(loss, content, content):.3f}, fast model {fast_style:.3f} (its content loss {fast_content:.3f})")

    print(f"\nstylise 256 px, engine time, wall / CPU ms (median of {args.repeats}, {args.threads} threads):")
    trained_layout = (args.width, args.blocks, args.space_to_depth, args.outer_kernel)
    layouts = [(16, 3, False, 9), (8, 1, False, 9), (32, 5, False, 9), (16, 3, True, 9), (16, 3, True, 3), (32, 5, True, 3)]  # the first: the old default
    timed = {}
    for width, blocks, space_to_depth, kernel in dict.fromkeys([trained_layout, *layouts]):
        trained_one = (width, blocks, space_to_depth, kernel) == trained_layout
        candidate = net if trained_one else Transformer(width, blocks, 1, space_to_depth, kernel).eval()
        for precision in ("float32", "bfloat16"):
            def run():
                with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16"):
                    stylise(candidate, held_out, one_hot(0, 1), 1024)
            timed[(width, blocks, space_to_depth, kernel, precision)] = (wall, cpu) = median_ms([run], args.repeats)[0]
            note = f"  <- trained, held-out style loss {fast_style:.3f}" if trained_one and precision == "float32" else ""
            name = f"width {width:2d} blocks {blocks} {'space-to-depth' if space_to_depth else 'full-res      '} kernel {kernel}"
            print(f"  {name} {precision:8s}: {wall:7.1f} / {cpu:7.1f} ms{note}")
    fast_wall, fast_cpu = timed[(*trained_layout, "float32")]

    if args.gatys_steps:
        print(f"\nGatys (L-BFGS, 256 px) until its style loss <= {fast_style:.3f}:")
        step, (wall, cpu), value = gatys_until(vgg, loss, content, style, fast_style, args.gatys_steps)
        ratios = f"{wall * 1000 / fast_wall:.0f}x the fast model's {fast_wall:.1f} ms wall, {cpu * 1000 / fast_cpu:.0f}x its {fast_cpu:.1f} ms CPU"
        if value <= fast_style:
            print(f"  reached at step {step} after {wall:.1f} s wall, {cpu:.1f} s CPU (style loss {value:.3f}): {ratios}")
        else:
            print(f"  not reached in {args.gatys_steps} steps ({wall:.1f} s wall, {cpu:.1f} s CPU; style loss {value:.3f}): more than {ratios}")

    print("\nembedding the sample collection (16 photos, 224 px, batch 16):")
    lite = load_model("efficientnet_lite0", "cpu")
    photos = [Image.open(p).convert("RGB") for p in sample_files()]
    fitted = [fit_image(p, (224, 224)) for p in photos]
    ours = lambda: run_method("embed_collection", "efficientnet_lite0", {"images": photos}, {"batch_size": 16}, device="cpu")  # noqa: E731

    def plain(memory_format=torch.contiguous_format):
        with torch.inference_mode():
            batch = torch.cat([to_tensor(p) for p in fitted]).contiguous(memory_format=memory_format)
            features = lite.net.forward_features(lite.normalize(batch))
            return features.mean((2, 3))

    plain_cl = lambda: plain(torch.channels_last)  # noqa: E731  (what layer_outputs feeds the network)
    timed = median_ms([ours, plain, plain_cl], args.repeats)
    n = len(photos)
    print(f"  same vectors: largest difference {abs(ours().arrays['features'] - plain().numpy()).max():.2e}")
    for name, (wall, cpu) in zip(("embed_collection (incl. resizing the originals)", "plain loop (pre-resized)", "plain loop, channels_last"), timed):
        print(f"  {name:48s} {n * 1000 / wall:6.1f} img/s wall, {n * 1000 / cpu:6.1f} per CPU s")
    print(f"  embed_collection / plain loop: {timed[1][0] / timed[0][0]:.2f}x wall, {timed[1][1] / timed[0][1]:.2f}x CPU;"
          f" / plain channels_last loop: {timed[2][0] / timed[0][0]:.2f}x wall, {timed[2][1] / timed[0][1]:.2f}x CPU")  # fmt: skip
    print("load average at end: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
