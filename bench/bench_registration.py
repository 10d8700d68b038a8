"""Registering a model, isolated: what it costs, and whether the API keeps answering meanwhile.

1. EfficientNet-Lite0's ONNX copy (18.6 MB), three ways, alternating, medians of ``--repeats``:
   - before isolation: read, convert and validate in this process (``load_network`` + ``validate_network``,
     what ``POST /v1/models`` did until the vetting child);
   - ``vet()`` in this process: the same plus the static checks, the size probes and the capability probes;
   - ``vet_in_child``: all of that in a fresh interpreter under the memory, CPU and wall-clock caps (today's path).
2. A real API process (uvicorn, open access, Redis, filesystem storage): ``/healthz`` polled every 20 ms,
   its p50/p99 latency idle, while the copy registers (the first registration starts the vetting zygote),
   again, and while hostile files register (a 100k-node graph, a ConstantOfShape bomb, an input-dependent bomb).

    PYTHONPATH=. .venv/bin/python bench/bench_registration.py [--repeats 3]
"""

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.models import load_model  # noqa: E402
from engine.models.formats import load_network  # noqa: E402
from engine.models.registered import ModelMetadata, validate_network  # noqa: E402
from engine.models.vetting import vet  # noqa: E402
from tests import hostile_files as hostile  # noqa: E402
from tests.e2e.servers import APIServer, RedisServer  # noqa: E402
from tests.e2e.test_hostile_registrations import HealthProbe  # noqa: E402
from worker.model_vetting import VettingLimits, vet_in_child  # noqa: E402
from worker.settings import Settings  # noqa: E402

META = {"name": "lite0-copy", "preprocessing": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "input_size": [224, 224], "labels": "imagenet"}


def lite0_onnx() -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(load_model("efficientnet_lite0", "cpu").net, (torch.zeros(1, 3, 224, 224),), buffer, dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "b"}, "logits": {0: "b"}})
    return buffer.getvalue()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def registration_times(data: bytes, repeats: int) -> dict[str, float]:
    vetting = VettingLimits.from_settings(Settings())
    limits = vetting.model
    ways = {
        "before isolation (in process)": lambda: validate_network(load_network(data, "onnx"), ModelMetadata.parse(META), "onnx", limits),
        "vet() in process": lambda: vet(data, META, limits),
        "vet_in_child (today)": lambda: vet_in_child(data, META, vetting),
    }
    times = {name: [] for name in ways}
    for i in range(repeats):
        for name, fn in ways.items() if i % 2 == 0 else reversed(ways.items()):
            times[name].append(timed(fn))
    return {name: statistics.median(found) for name, found in times.items()}


def health_during(server: APIServer, client: httpx.Client, name: str, data: bytes | None, labels) -> tuple[float, float, float, int]:
    """(p50 ms, p99 ms, seconds taken, status) of /healthz while ``data`` registers (or 3 s idle when None), sampled
    for at least 3 s (a quick refusal leaves the rest of that time idle)."""
    with HealthProbe(server.url) as probe:
        start, status = time.perf_counter(), 0
        if data is not None:
            meta = {**META, "name": name, "labels": labels, "input_size": [64, 64] if labels != "imagenet" else [224, 224]}
            status = client.post("/v1/models", files={"file": (name, data)}, data={"metadata": json.dumps(meta)}).status_code
        took = time.perf_counter() - start
        time.sleep(max(0.0, 3 - took))
    return statistics.median(probe.latencies), probe.p99(), took, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = lite0_onnx()
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.2f}; efficientnet_lite0 ONNX copy {len(data) / 1e6:.1f} MB")
    times = registration_times(data, args.repeats)
    before = times["before isolation (in process)"]
    for name, seconds in times.items():
        print(f"  {name:32s} {seconds:6.2f} s  ({seconds / before:5.1f}x before isolation)")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        redis = RedisServer(tmp / "redis").start()
        (tmp / "cwd").mkdir()
        env = {"CONVLENS_REDIS_URL": redis.url, "CONVLENS_OPEN_ACCESS": "true", "CONVLENS_STORAGE_DIR": str(tmp / "storage"),
               "CONVLENS_BUILTIN_SAMPLES": "false", "CONVLENS_DEVICE": "cpu"}
        server = APIServer(env, tmp / "cwd", tmp / "api.log").start()
        try:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                print("/healthz every 20 ms on a real API process:")
                cases = [("idle", None, None), ("lite0-copy", data, "imagenet"), ("lite0-again", data, "imagenet"),
                         ("100k-nodes", hostile.many_nodes_onnx(100_000), None),
                         ("constant-of-shape-bomb", hostile.constant_of_shape_bomb(), None),
                         ("input-dependent-bomb", hostile.input_dependent_bomb(), None)]
                for name, payload, labels in cases:
                    p50, p99, took, status = health_during(server, client, name, payload, labels)
                    answer = f"registration {status} in {took:5.1f} s" if payload is not None else "no registration"
                    print(f"  {name:24s} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  ({answer})")
        finally:
            server.stop()
            redis.stop()
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
