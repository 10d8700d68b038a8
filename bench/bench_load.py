"""Load through the real stack (uvicorn API, Redis, one Celery worker), loopback only, bounded.

1. Inline saliency (efficientnet_lite0, a 224 px photo) from one client for
   ``--duration / 4`` seconds, then from ``--concurrency`` clients for
   ``--duration`` seconds: errors, p50/p95/p99 latency and requests/s against
   the single-client rate, and the CPU time the API and the client spent per
   answered request (what bounds the rate once every core is busy). 429
   (inline pool full) counts as an error. Run without dynamic batching and
   with it (``--batch-delay-ms``), side by side, alternating ``--rounds`` times
   so that both meet the same load from other processes.
2. ``--jobs`` trivial jobs (``probe_steps``, one step on a 16 px image, see
   bench_jobs.py): resident memory of the API and of the worker (main process
   plus pool child) after the first 10% of the jobs and after all of them.

    python bench/bench_load.py [--duration 60] [--concurrency 16] [--jobs 500] [--rounds 1]
"""

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_jobs import _ready, poll, stack_env, start_api, submit, upload_images  # noqa: E402
from tests.e2e.servers import CeleryWorker, RedisServer, wait_for  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loaded(api_pid: int, base_url: str, body: bytes, clients: int, seconds: float) -> tuple[list[float], dict]:
    """:func:`hammer`, with the CPU time the API and this client process spent per answered request."""
    api_cpu, client_cpu = cpu_seconds(api_pid), time.process_time()
    latencies, outcome = asyncio.run(hammer(base_url, body, clients, seconds))
    served = max(1, len(latencies))
    outcome["cpu"] = ((cpu_seconds(api_pid) - api_cpu) / served, (time.process_time() - client_cpu) / served)
    return latencies, outcome


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and its children (kB)."""
    total = 0
    pids = [pid]
    try:
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        pass
    for one in pids:
        try:
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


async def hammer(base_url: str, body: bytes, clients: int, seconds: float) -> tuple[list[float], dict[int, int]]:
    latencies: list[float] = []
    errors: dict[int, int] = {}
    stop = time.monotonic() + seconds
    headers = {"content-type": "application/json", "accept": "image/png"}

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:
            while time.monotonic() < stop:
                start = time.perf_counter()
                try:
                    response = await http.post("/v1/saliency", content=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError:
                    status = -1
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[status] = errors.get(status, 0) + 1

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, errors | {"elapsed": time.monotonic() - began}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000 if ordered else float("nan")


def report(name: str, latencies: list[float], outcome: dict) -> float:
    elapsed = outcome.pop("elapsed")
    api_cpu, client_cpu = outcome.pop("cpu")
    rate = len(latencies) / elapsed
    print(f"{name:<24} {rate:6.2f} req/s  p50 {percentile(latencies, .5):8.1f} ms  p95 {percentile(latencies, .95):8.1f} ms"
          f"  p99 {percentile(latencies, .99):8.1f} ms  CPU/request: API {api_cpu * 1000:5.1f} ms, client {client_cpu * 1000:4.1f} ms"
          f"  ok {len(latencies)}  errors {sum(outcome.values())} {outcome or ''}  (load average {os.getloadavg()[0]:.1f})")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=500, help="trivial jobs for the memory check (0: none)")
    parser.add_argument("--batch-delay-ms", type=float, default=5.0, help="dynamic batching's delay, measured against none")
    parser.add_argument("--inline-threads", type=int, default=4, help="the API's inline calls working at once")
    parser.add_argument("--batch-runners", type=int, default=2, help="the API's threads running batches")
    parser.add_argument("--rounds", type=int, default=1, help="times both configurations run, alternating")
    args = parser.parse_args()

    import base64
    import json

    from skimage import data
    from PIL import Image

    photo = io.BytesIO()
    Image.fromarray(data.chelsea()).resize((224, 224)).save(photo, "PNG")
    body = json.dumps({"model": "efficientnet_lite0", "inputs": {"image": {"base64": base64.b64encode(photo.getvalue()).decode()}}}).encode()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis_server = RedisServer(tmp / "redis").start()
        # the inline pool holds every client: 429 would be an error here
        base_env = stack_env(tmp, redis_server.url, CONVLENS_INLINE_BACKLOG=str(args.concurrency),
                             CONVLENS_WARM_MODELS='["efficientnet_lite0"]', CONVLENS_INLINE_THREADS=str(args.inline_threads),
                             CONVLENS_INLINE_BATCH_RUNNERS=str(args.batch_runners))
        worker = CeleryWorker(base_env, tmp / "worker.log").start()
        try:
            print(f"inline saliency, efficientnet_lite0 224 px, {os.cpu_count()} CPU cores")
            ratios: dict[float, list[float]] = {0.0: [], args.batch_delay_ms: []}
            for round_number in range(args.rounds):
                rates = {delay: measure(base_env, body, delay, args) for delay in ratios}
                for delay in ratios:
                    ratios[delay].append(rates[delay][1] / rates[delay][0])
                print(f"{'dynamic batching':<36} {rates[args.batch_delay_ms][1] / rates[0.0][1]:6.2f}x the {args.concurrency} clients' rate "
                      f"without it (round {round_number + 1} of {args.rounds})")
            for delay, values in ratios.items():
                print(f"{args.concurrency} clients / 1 client, {config_label(delay)}: {', '.join(f'{value:.2f}x' for value in values)}"
                      f" (median {statistics.median(values):.2f}x)")
            if args.jobs:
                jobs_memory(base_env, worker, args.jobs)
        finally:
            worker.stop()
            redis_server.stop()


def config_label(delay: float) -> str:
    return "no batching" if delay == 0 else f"batching, {delay:g} ms"


def measure(base_env: dict, body: bytes, delay: float, args) -> tuple[float, float]:
    """A fresh API with batching ``delay``: the single-client rate, then ``args.concurrency`` clients' rate."""
    api_process, base_url = start_api({**base_env, "CONVLENS_INLINE_BATCH_DELAY_MS": str(delay)})
    try:
        with httpx.Client(base_url=base_url, timeout=300) as api:
            wait_for(lambda: _ready(api), 180, "the API", interval=0.3)
            api.post("/v1/saliency", content=body, headers={"content-type": "application/json"})  # warm-up
        label = config_label(delay)
        single = report(f"1 client, {label}", *loaded(api_process.pid, base_url, body, 1, args.duration / 4))
        many = report(f"{args.concurrency} clients, {label}", *loaded(api_process.pid, base_url, body, args.concurrency, args.duration))
        print(f"{'throughput ratio':<36} {many / single:6.2f}x the single-client rate")
        return single, many
    finally:
        api_process.terminate()
        api_process.wait(10)


def jobs_memory(env: dict, worker, count: int) -> None:
    api_process, base_url = start_api(env)
    try:
        with httpx.Client(base_url=base_url, timeout=60) as api:
            wait_for(lambda: _ready(api), 180, "the API", interval=0.3)
            images = upload_images(api, count, seed=1)
            warm = max(1, count // 10)
            for image_id in images[:warm]:
                poll(api, submit(api, image_id), interval=0.01)
            before = rss_kb(api_process.pid), rss_kb(worker.pid)
            for image_id in images[warm:]:
                poll(api, submit(api, image_id), interval=0.01)
            after = rss_kb(api_process.pid), rss_kb(worker.pid)
        print(f"memory over {count} trivial jobs (after {warm} -> after {count}):")
        for name, b, a in zip(("API", "worker"), before, after):
            print(f"  {name:<7} {b / 1024:8.1f} MB -> {a / 1024:8.1f} MB  ({(a - b) / b * 100:+.1f}%)")
    finally:
        api_process.terminate()
        api_process.wait(10)

if __name__ == "__main__":
    main()
