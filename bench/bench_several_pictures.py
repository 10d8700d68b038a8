"""Several pictures in one request against one request each (issue 24), inline saliency on
efficientnet_lite0 through the app in process (no network, so the difference is the batching):

1. 32 pictures (real photos, 224 px) as 32 single requests, one after another;
2. the same 32 as one request, run ``inline_max_batch`` at a time (1, 8 and 32);
3. the engine alone: ``run_calls`` at batch 1, 4, 8, 16, 32 (images/s), the floor under both.

Prints images/s and the ratios, and checks that every map of the batched answer equals its single
request's (relative error under 1e-5).

    python bench/bench_several_pictures.py [--pictures 32] [--repeat 2]
"""

import argparse
import base64
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def photos(count: int) -> list[bytes]:
    from PIL import Image, ImageOps
    from skimage import data
    from sklearn.datasets import load_sample_images

    base = [Image.fromarray(getattr(data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket")]
    base += [Image.fromarray(np.asarray(img)) for img in load_sample_images().images]
    pictures = []
    for i in range(count):
        picture = base[i % len(base)].convert("RGB").resize((224, 224))
        picture = ImageOps.mirror(picture) if (i // len(base)) % 2 else picture
        buffer = io.BytesIO()
        picture.rotate(3 * (i // (2 * len(base))), expand=False).save(buffer, format="PNG")
        pictures.append(buffer.getvalue())
    return pictures


def maps_of(body: dict) -> list[np.ndarray]:
    entries = body["results"] if "results" in body else [body]
    return [np.load(io.BytesIO(base64.b64decode(next(a for a in e["artifacts"] if a["name"] == "map")["data_base64"]))) for e in entries]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batches", default="1,4,8,16,32", help="engine batch sizes to time")
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    from api.app import create_app
    from tests.api.conftest import make_settings

    pictures = photos(args.pictures)
    inputs = [{"base64": base64.b64encode(p).decode()} for p in pictures]
    storage = tempfile.mkdtemp()
    rates, singles = {}, None
    for batch in (1, 8, 32):
        settings = make_settings(storage_dir=storage, inline_max_batch=batch, inline_max_pictures=max(64, args.pictures), device=args.device)
        with TestClient(create_app(settings)) as client:
            client.post("/v1/saliency", json={"inputs": {"image": inputs[0]}})  # warm: model loaded, kernels chosen
            if singles is None:
                best = float("inf")
                for _ in range(args.repeat):
                    start = time.perf_counter()
                    answers = [client.post("/v1/saliency?embed=map", json={"inputs": {"image": one}}).json() for one in inputs]
                    best = min(best, time.perf_counter() - start)
                singles = [maps_of(a)[0] for a in answers]
                rates["32 single requests"] = args.pictures / best
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                body = client.post("/v1/saliency?embed=map", json={"inputs": {"image": inputs}}).json()
                best = min(best, time.perf_counter() - start)
            worst = max(float(np.abs(ours - alone).max() / np.abs(alone).max()) for ours, alone in zip(maps_of(body), singles))
            assert worst <= 1e-5, worst
            rates[f"one request, batch {batch}"] = args.pictures / best

    from PIL import Image

    from engine.run import prepare, run_calls

    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pictures]
    call = prepare("saliency", "efficientnet_lite0", {}, {"image": 1})
    run_calls([(call, {"image": images[0]})], args.device)
    for batch in (int(b) for b in args.batches.split(",")):
        best = float("inf")
        for _ in range(args.repeat):
            start = time.perf_counter()
            for first in range(0, len(images), batch):
                run_calls([(call, {"image": image}) for image in images[first : first + batch]], args.device)
            if args.device == "cuda":
                __import__("torch").cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        rates[f"engine, batch {batch}"] = args.pictures / best

    base = rates["32 single requests"]
    print(f"saliency on efficientnet_lite0 ({args.device}), {args.pictures} pictures at 224 px (best of {args.repeat}); "
          "maps equal to single requests'")
    for name, rate in rates.items():
        print(f"  {name:28s} {rate:7.1f} images/s  {rate / base:5.2f}x the single requests")


if __name__ == "__main__":
    main()
