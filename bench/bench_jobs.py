"""Job round trip and throughput through the real stack: uvicorn API, Redis, one Celery worker.

A trivial job is ``probe_steps`` (the test plugin) with one step on a 16 px
image, its forward pass stopped at the first convolution, so the numbers
measure the job machinery
(HTTP, validation, record, broker, worker, artifacts, polling/SSE), not a model.
Each job gets its own uploaded image, so deduplication never short-cuts one.

    python bench/bench_jobs.py [--jobs 200] [--submitters 4] [--runs 60]
"""

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.servers import CeleryWorker, RedisServer, free_port, wait_for  # noqa: E402

FINISHED = {"succeeded", "failed", "cancelled", "aborted"}


def upload_images(api: httpx.Client, count: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    ids = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, format="PNG")
        ids.append(api.post("/v1/images", content=buffer.getvalue(), headers={"content-type": "image/png"}).json()["id"])
    return ids


def submit(api: httpx.Client, image_id: str) -> str:
    body = {"method": "probe_steps", "model": "efficientnet_lite0", "inputs": {"image": image_id}, "params": {"steps": 1, "size": 16, "layer": "conv_stem"}}
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def poll(api: httpx.Client, job_id: str, interval: float = 0.002) -> dict:
    while True:
        job = api.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in FINISHED:
            assert job["state"] == "succeeded", job
            return job
        time.sleep(interval)


def follow(api: httpx.Client, job_id: str) -> dict:
    with api.stream("GET", f"/v1/jobs/{job_id}/events") as stream:
        event = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "state":
                job = json.loads(line[6:])
                assert job["state"] == "succeeded", job
                return job
    raise RuntimeError("the event stream ended without a final state")


def submit_and_wait(api: httpx.Client, image_id: str) -> dict:
    """One request: ``Prefer: wait=30`` holds it until the job finished."""
    body = {"method": "probe_steps", "model": "efficientnet_lite0", "inputs": {"image": image_id}, "params": {"steps": 1, "size": 16, "layer": "conv_stem"}}
    response = api.post("/v1/jobs", json=body, headers={"Prefer": "wait=30"})
    assert response.status_code == 200 and response.json()["state"] == "succeeded", response.text
    return response.json()


def page_bytes(api: httpx.Client) -> dict[str, int]:
    """Bytes of the web page's first load: the page, its script and style, and the two catalogue calls it makes."""
    paths = ["/", "/static/app.js", "/static/style.css", "/v1/models", "/v1/methods"]
    return {path: len(api.get(path, headers={"accept-encoding": "identity"}).content) for path in paths}


def round_trips(api: httpx.Client, image_ids: list[str], wait) -> list[float]:
    seconds = []
    for image_id in image_ids:
        start = time.perf_counter()
        wait(api, submit(api, image_id))
        seconds.append(time.perf_counter() - start)
    return seconds


def throughput(base_url: str, image_ids: list[str], submitters: int) -> float:
    chunks = [image_ids[i::submitters] for i in range(submitters)]

    def run(chunk: list[str]) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as api:
            for job_id in [submit(api, image_id) for image_id in chunk]:
                poll(api, job_id, interval=0.01)

    start = time.perf_counter()
    with ThreadPoolExecutor(submitters) as pool:
        list(pool.map(run, chunks))
    return len(image_ids) / (time.perf_counter() - start)


def describe(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"{name:<22} median {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis_server = RedisServer(tmp / "redis").start()
        env = stack_env(tmp, redis_server.url)
        worker = CeleryWorker(env, tmp / "worker.log").start()
        api_process, base_url = start_api(env)
        try:
            with httpx.Client(base_url=base_url, timeout=30) as api:
                wait_for(lambda: _ready(api), 120, "the API", interval=0.3)
                images = upload_images(api, 3 * args.runs + args.jobs + 3, seed=0)
                round_trips(api, images[:3], poll)  # warm-up: the worker child loads its model
                polled, streamed, waited = [], [], []
                for i in range(args.runs):  # interleaved, so that all three see the same machine load
                    polled += round_trips(api, [images[3 + 3 * i]], poll)
                    streamed += round_trips(api, [images[4 + 3 * i]], follow)
                    waited.append(_timed(submit_and_wait, api, images[5 + 3 * i]))
                page = page_bytes(api)
            rate = throughput(base_url, images[3 + 3 * args.runs:], args.submitters)
        finally:
            api_process.terminate()
            api_process.wait(10)
            worker.stop()
            redis_server.stop()
    print(f"trivial job round trip, one worker (-c 1), {os.cpu_count()} CPU cores")
    print(describe("submit -> poll (2 ms)", polled))
    print(describe("submit -> SSE", streamed))
    print(describe("Prefer: wait (1 call)", waited))
    print(f"{'Prefer: wait - poll':<22} median {1000 * (statistics.median(waited) - statistics.median(polled)):+7.1f} ms")
    print(f"{'web page first load':<22} {sum(page.values()) / 1024:7.1f} KiB   ({', '.join(f'{k} {v}' for k, v in page.items())})")
    print(f"{'throughput':<22} {rate:7.1f} jobs/s   ({args.jobs} jobs, {args.submitters} submitters)")


def stack_env(tmp: Path, redis_url: str, **extra: str) -> dict[str, str]:
    """Settings of a benchmark's loopback stack: its own Redis and storage, the test plugins, the CPU, open access."""
    return {"CONVLENS_REDIS_URL": redis_url, "CONVLENS_STORAGE_DIR": str(tmp / "storage"), "CONVLENS_PLUGINS": "tests.e2e.plugins",
            "CONVLENS_DEVICE": os.environ.get("CONVLENS_DEVICE", "cpu"), "CONVLENS_OPEN_ACCESS": "true", **extra}


def start_api(env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """uvicorn serving the app in a process of its own on a free loopback port: the process and its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
    )
    return process, f"http://127.0.0.1:{port}"


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
