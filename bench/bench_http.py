"""HTTP round trip of an inline call vs the engine's own time for the same call.

One process: a real uvicorn server on 127.0.0.1 (in a thread) and an httpx
client. Runs alternate between the engine (``run_method`` on the decoded
picture) and HTTP (multipart upload answered as JSON, and as ``Accept:
image/png``; JSON with every artifact embedded, with the default links only, and
with the main picture embedded), so both see the same machine load. Prints medians of:

- the engine alone, and each HTTP round trip;
- overhead = round trip - the engine time of that same call (from the
  ``Server-Timing`` header), which is what HTTP adds: upload parsing, decoding,
  encoding, the thread hand-off and transport;
- the server-side decode and encode times;
- the floor: the same upload refused in the pool before decoding (unknown
  model), i.e. transport + multipart parsing + the thread hand-off alone.

Uses ``saliency`` when it is registered, else ``classify``.

    python bench/bench_http.py [--runs 30] [--size 224]
"""

import argparse
import io
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from api.app import create_app  # noqa: E402
from engine.registry import all_methods  # noqa: E402
from engine.run import run_method  # noqa: E402
from api.settings import Settings  # noqa: E402

MODEL = "efficientnet_lite0"
WARMUP = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int) -> uvicorn.Server:
    settings = Settings(device="cpu", inline_threads=1, warm_models=[MODEL], open_access=True)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server


def server_timing(response: httpx.Response) -> dict[str, float]:
    """``engine;dur=103.2, decode;dur=1.5`` -> {"engine": 103.2, "decode": 1.5}."""
    entries = (part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    return {name: float(duration) for name, duration in entries}


def round_trip(client: httpx.Client, path: str, **kwargs) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    response = client.post(path, **kwargs)
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed, server_timing(response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=224, help="side of the uploaded photo (px)")
    args = parser.parse_args()

    method = "saliency" if "saliency" in {m.name for m in all_methods()} else "classify"
    photo = Image.fromarray(data.chelsea()).resize((args.size, args.size))
    upload = io.BytesIO()
    photo.save(upload, format="PNG")
    files = {"image": ("chelsea.png", upload.getvalue(), "image/png")}
    variants = {  # name -> (query, headers)
        "JSON, embed=all": ("?embed=all", {}),
        "JSON, default (linked)": ("", {}),
        "JSON, embed=main": ("?embed=main", {}),
        "Accept: image/png": ("", {"accept": "image/png"}),
    }

    port = free_port()
    server = start_server(port)
    engine_ms: list[float] = []
    floor_ms: list[float] = []
    trips = {name: {"trip": [], "overhead": [], "decode": [], "encode": []} for name in variants}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            for run in range(WARMUP + args.runs):
                start = time.perf_counter()
                run_method(method, MODEL, {"image": photo}, {}, device="cpu")
                engine = (time.perf_counter() - start) * 1000
                measured = {
                    name: round_trip(client, f"/v1/{method}{query}", files=files, headers=headers)
                    for name, (query, headers) in variants.items()
                }
                start = time.perf_counter()
                refused = client.post(f"/v1/{method}", files=files, data={"model": "no_such_model"})
                floor = (time.perf_counter() - start) * 1000
                assert refused.status_code == 404, refused.text
                if run < WARMUP:
                    continue
                engine_ms.append(engine)
                floor_ms.append(floor)
                for name, (trip, timing) in measured.items():
                    trips[name]["trip"].append(trip)
                    trips[name]["overhead"].append(trip - timing["engine"])
                    trips[name]["decode"].append(timing["decode"])
                    trips[name]["encode"].append(timing["encode"])
    finally:
        server.should_exit = True

    median = statistics.median
    note = "" if method == "saliency" else " (saliency is not registered: fell back to classify)"
    print(f"method {method}{note}; model {MODEL}; {args.size}x{args.size} PNG upload; {args.runs} runs, medians")
    print(f"{'engine alone (run_method)':34s} {median(engine_ms):8.2f} ms")
    for name, values in trips.items():
        print(
            f"{'HTTP, ' + name:34s} {median(values['trip']):8.2f} ms   overhead {median(values['overhead']):6.2f} ms"
            f"   (of which decode {median(values['decode']):.2f}, encode {median(values['encode']):.2f})"
        )
    print(f"{'HTTP floor (refused upload)':34s} {median(floor_ms):8.2f} ms")


if __name__ == "__main__":
    main()
