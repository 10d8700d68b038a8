"""Fast style models against Gatys, and collection embedding against a plain torch loop.

1. Trains one style model (``train_style_model`` on the built-in sample photos,
   the hubble deep field as style), then times ``stylise`` at 256 px for
   several transformer widths / depths and precisions (time does not depend on
   the weights; the held-out style loss is printed for the trained one).
2. Gatys (``engine.synthesis.style_transfer.stylise``, L-BFGS) on the same
   held-out picture (scikit-learn's china, not in the training set) and style:
   its time until its 8-bit image reaches the style loss of the fast model's
   output, against one fast forward pass.
3. Embedding the sample collection: ``embed_collection`` (no cache) against a
   plain batched ``torch.inference_mode`` loop over the same network to the
   same layer, images per second.

    python bench/bench_stylize.py                  # the run recorded in bench/README.md
    python bench/bench_stylize.py --train-steps 20 # quick
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imaging import fit_image, to_tensor  # noqa: E402
from engine.models import load_model  # noqa: E402
from engine.run import run_method  # noqa: E402
from engine.synthesis.fast_style import STYLE_LAYERS, PerceptualLoss, StyleModelConfig, Transformer, build, one_hot, stylise  # noqa: E402
from engine.synthesis.style_transfer import StyleTransferParams  # noqa: E402
from engine.synthesis.style_transfer import stylise as gatys  # noqa: E402
from worker.samples import sample_files  # noqa: E402

CONTENT_LAYER = "block4_relu2"


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def style_loss_of(loss: PerceptualLoss, content: torch.Tensor, picture: torch.Tensor) -> float:
    return loss.evaluate(content, picture)[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--train-size", type=int, default=128)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--gatys-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(2)
    vgg = load_model("vgg19", "cpu")
    photos = [Image.open(p).convert("RGB") for p in sample_files() if p.stem not in ("china", "hubble_deep_field")]
    style = Image.fromarray(data.hubble_deep_field())
    held_out = fit_image(Image.open(next(p for p in sample_files() if p.stem == "china")).convert("RGB"), (256, 256), "crop")

    start = time.perf_counter()
    params = {"steps": args.train_steps, "size": args.train_size, "width": args.width, "residual_blocks": args.blocks, "preview_every": 0}
    trained = run_method("train_style_model", "vgg19", {"content": photos, "style": [style]}, params, device="cpu")
    print(f"trained {args.width}x{args.blocks} for {args.train_steps} steps at {args.train_size} px in {time.perf_counter() - start:.0f} s")
    net = build(StyleModelConfig.model_validate(trained.data["style_model"]))
    net.load_state_dict(trained.tensors)

    loss = PerceptualLoss(vgg, to_tensor(fit_image(style, (256, 256), "crop")), CONTENT_LAYER, list(STYLE_LAYERS))
    content = to_tensor(held_out)
    fast_picture = to_tensor(stylise(net, held_out, one_hot(0, 1), 1024))
    fast_style = style_loss_of(loss, content, fast_picture)
    print(f"held-out style loss: photo {style_loss_of(loss, content, content):.3f}, fast model {fast_style:.3f}")

    print("\nstylise 256 px, engine time (median of %d):" % args.repeats)
    timed = {}
    for width, blocks in ((8, 1), (16, 3), (32, 5)):
        candidate = net if (width, blocks) == (args.width, args.blocks) else Transformer(width, blocks).eval()
        for precision in ("float32", "bfloat16"):
            def run():
                with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16"):
                    stylise(candidate, held_out, one_hot(0, 1), 1024)
            timed[(width, blocks, precision)] = ms = median_ms(run, args.repeats)
            note = f"  held-out style loss {fast_style:.3f}" if candidate is net and precision == "float32" else ""
            print(f"  width {width:2d} blocks {blocks} {precision:8s}: {ms:7.1f} ms{note}")
    fast_ms = timed[(args.width, args.blocks, "float32")]

    print(f"\nGatys (L-BFGS, 256 px) until its style loss <= {fast_style:.3f}:")
    previews = []  # (step, seconds since start, 8-bit picture); scored after the run (no forward passes inside its loop)
    began = time.perf_counter()

    def progress(step, total, preview=None, **info):
        if preview is not None:
            previews.append((step, time.perf_counter() - began, preview))

    gatys(vgg, content, [to_tensor(fit_image(style, (256, 256), "crop"))], StyleTransferParams(size=256, steps=args.gatys_steps, scales=1, preview_every=1), progress)
    reached = next(((step, seconds, value) for step, seconds, picture in previews
                    if (value := style_loss_of(loss, content, to_tensor(picture))) <= fast_style), None)  # fmt: skip
    if reached:
        step, seconds, value = reached
        print(f"  reached at step {step} after {seconds:.1f} s (style loss {value:.3f}): {seconds * 1000 / fast_ms:.0f}x the fast model's {fast_ms:.1f} ms")
    else:
        last = style_loss_of(loss, content, to_tensor(previews[-1][2]))
        print(f"  not reached in {args.gatys_steps} steps ({previews[-1][1]:.1f} s, style loss {last:.3f}): > {previews[-1][1] * 1000 / fast_ms:.0f}x")

    print("\nembedding the sample collection (16 photos, 224 px, batch 16):")
    lite = load_model("efficientnet_lite0", "cpu")
    photos = [Image.open(p).convert("RGB") for p in sample_files()]
    fitted = [fit_image(p, (224, 224)) for p in photos]
    ours = median_ms(lambda: run_method("embed_collection", "efficientnet_lite0", {"images": photos}, {"batch_size": 16}, device="cpu"), 3)

    def plain():
        with torch.inference_mode():
            batch = torch.cat([to_tensor(p) for p in fitted])
            features = lite.net.forward_features(lite.normalize(batch))
            return features.mean((2, 3))

    theirs = median_ms(plain, 3)
    n = len(photos)
    print(f"  embed_collection {n * 1000 / ours:.1f} img/s (incl. resizing the originals), plain loop {n * 1000 / theirs:.1f} img/s (pre-resized): ratio {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
