"""The vetting child: a healthy file vetted as in the engine tests, and the caps acting on the heavy attacks
(memory bomb, time bomb, CPU cap, a crash) as clean 4xx refusals while this (parent) process stays responsive."""

import dataclasses
import os
import signal
import statistics
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import onnx
import pytest

from engine.errors import ModelRejected
from engine.models.registered import RegistrationLimits
from tests import hostile_files as hostile
from tests.model_files import metadata, onnx_bytes, pt2_bytes, tiny_net
from worker.model_vetting import ZYGOTE, ModelVetter, VettingLimits, child_environment, vet_in_child
from worker.settings import Settings

SIZE = (64, 64)
LABELS = ["ant", "bee", "cat", "dog"]
LIMITS = VettingLimits(
    RegistrationLimits(max_parameters=10**7, max_forward_seconds=60, max_nodes=20_000,
                       max_tensor_bytes=2**30, max_archive_bytes=256 * 2**20),
    seconds=120, cpu_seconds=120, memory_bytes=2**30,
)


def with_model_limits(**changes) -> VettingLimits:
    return dataclasses.replace(LIMITS, model=dataclasses.replace(LIMITS.model, **changes))


def vetting_children() -> list[int]:
    """Pids of the vetting children of this process's zygote."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ZYGOTE.pid is not None and parent == ZYGOTE.pid:
            found.append(int(entry.name))
    return found


@contextmanager
def ticking(latencies: list[float]):
    """Measure how late a 10 ms sleep wakes up in this process while the block runs."""
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            start = time.perf_counter()
            time.sleep(0.01)
            latencies.append(time.perf_counter() - start - 0.01)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def assert_responsive(latencies: list[float]) -> None:
    p99 = statistics.quantiles(latencies, n=100)[98]
    assert p99 < 0.1, f"this process woke up to {p99 * 1000:.0f} ms late (p99) while the child ran"


def refusal(data: bytes, meta: dict, limits: VettingLimits) -> tuple[ModelRejected, float]:
    start = time.perf_counter()
    with pytest.raises(ModelRejected) as caught:
        vet_in_child(data, meta, limits)
    return caught.value, time.perf_counter() - start


def test_two_files_are_vetted_one_child_at_a_time_and_leave_nothing_behind():
    vetter = ModelVetter(Settings(model_vetting_concurrency=1))
    files = {"onnx": onnx_bytes(tiny_net(), SIZE), "torch_export": pt2_bytes(tiny_net(), SIZE)}
    before = set(Path(tempfile.gettempdir()).glob("convlens-vetting-*"))
    results, most, stop = {}, [0], threading.Event()

    def watch():
        while not stop.is_set():
            most[0] = max(most[0], len(vetting_children()))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    def vet(fmt):
        try:
            results[fmt] = vetter.vet(files[fmt], metadata("tiny", SIZE, LABELS))
        except Exception as exc:  # noqa: BLE001 - shown in the assertion below
            results[fmt] = exc

    workers = [threading.Thread(target=vet, args=(fmt,)) for fmt in files]
    for thread in [watcher, *workers]:
        thread.start()
    for thread in workers:
        thread.join(300)
    stop.set()
    watcher.join()
    assert most[0] == 1
    assert not [r for r in results.values() if isinstance(r, Exception)], results
    assert results["onnx"].onnx == files["onnx"] and results["onnx"].parameters == 1460  # see tests/engine/test_vetting.py
    assert onnx.load_model_from_string(results["torch_export"].onnx).graph.node and results["torch_export"].parameters == 1508
    for vetted in results.values():
        assert vetted.sizes.as_dict() == {"native": [64, 64], "min": [32, 32], "max": [512, 512], "fixed": False}
        assert set(vetted.capabilities.values()) == {None}
    assert set(Path(tempfile.gettempdir()).glob("convlens-vetting-*")) == before
    assert vetting_children() == []


def test_the_child_environment_holds_no_settings_or_secrets(monkeypatch):
    monkeypatch.setenv("CONVLENS_ADMIN_KEY", "the-admin-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-storage-secret")
    environment = child_environment(Path("/tmp/somewhere"))
    assert not [key for key in environment if key.startswith(("CONVLENS_", "AWS_", "PYTHON"))]
    assert "secret" not in " ".join(environment.values())
    assert environment["HOME"] == environment["TMPDIR"] == "/tmp/somewhere" and environment["CUDA_VISIBLE_DEVICES"] == ""


def test_the_memory_cap_stops_a_bomb_the_static_cap_was_raised_for():
    bomb, meta = hostile.constant_of_shape_bomb(), metadata("bomb", SIZE, None)
    static, _ = refusal(bomb, meta, LIMITS)
    assert static.code == "tensor_too_large" and "CONVLENS_MAX_MODEL_TENSOR_BYTES" in static.message
    rss_before, latencies = _resident_bytes(), []
    with ticking(latencies):
        error, took = refusal(bomb, meta, with_model_limits(max_tensor_bytes=2**40))  # only the memory cap stands
    assert error.code == "model_memory_limit" and "CONVLENS_MODEL_VETTING_MEMORY_BYTES" in error.message
    assert "1,073,741,824" in error.message and "2147395600 bytes" in error.message
    assert _resident_bytes() - rss_before < 200 * 2**20  # the 2 GB were never this process's
    assert took < LIMITS.seconds
    assert_responsive(latencies)


def test_the_wall_clock_cap_kills_a_time_bomb_and_the_node_cap_refuses_it_first():
    graph, meta = hostile.many_nodes_onnx(100_000), metadata("slow", SIZE, None)
    error, took = refusal(graph, meta, LIMITS)
    assert error.code == "too_many_nodes" and "CONVLENS_MAX_MODEL_NODES" in error.message and took < 60
    latencies = []
    with ticking(latencies):
        error, took = refusal(graph, meta, dataclasses.replace(with_model_limits(max_nodes=10**6), seconds=12))
    assert error.code == "model_too_slow" and "12 s" in error.message and "CONVLENS_MODEL_VETTING_SECONDS" in error.message
    assert 12 <= took < 20
    assert vetting_children() == []
    assert_responsive(latencies)


def test_the_cpu_time_cap_holds_on_its_own():
    limits = dataclasses.replace(with_model_limits(max_nodes=10**6), seconds=120, cpu_seconds=2)
    error, took = refusal(hostile.many_nodes_onnx(100_000), metadata("slow", SIZE, None), limits)
    assert error.code == "model_too_slow" and "CPU time" in error.message and took < 60


def test_the_child_runs_confined_and_a_signal_kills_it_into_a_clean_refusal(monkeypatch):
    """Seen from /proc while the real child vets a slow graph: its environment, working directory, niceness and
    limits; then it is killed with SIGSEGV, as a crash would."""
    monkeypatch.setenv("CONVLENS_ADMIN_KEY", "the-admin-secret")
    outcome = {}

    def vet():
        try:
            vet_in_child(hostile.many_nodes_onnx(100_000), metadata("slow", SIZE, None), with_model_limits(max_nodes=10**6))
        except ModelRejected as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=vet)
    thread.start()
    deadline, limits = time.monotonic() + 90, ""
    while "Max address space" not in limits or "unlimited" in _limit_line(limits, "Max address space"):
        assert time.monotonic() < deadline, "the child never capped its memory"
        time.sleep(0.1)
        children = vetting_children()
        limits = Path(f"/proc/{children[0]}/limits").read_text() if children else ""
    (child,) = vetting_children()
    environment = Path(f"/proc/{child}/environ").read_bytes()
    cwd = Path(os.readlink(f"/proc/{child}/cwd"))
    listing = list(cwd.iterdir())
    nice = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[16])
    os.kill(child, signal.SIGSEGV)
    thread.join(60)
    assert b"CONVLENS" not in environment and b"the-admin-secret" not in environment
    assert listing == [] and cwd.parent.name.startswith("convlens-vetting-") and not cwd.exists()  # empty, then removed
    assert nice == min(19, os.nice(0) + 10) and "unlimited" not in _limit_line(limits, "Max cpu time")
    assert outcome["error"].code == "model_crashed" and "SIGSEGV" in outcome["error"].message


def _limit_line(limits: str, name: str) -> str:
    return next((line for line in limits.splitlines() if line.startswith(name)), "")


def _resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_a_dead_zygote_is_started_again_and_one_ends_with_its_process(tmp_path):
    healthy, meta = onnx_bytes(tiny_net(), SIZE), metadata("tiny", SIZE, LABELS)
    vet_in_child(healthy, meta, LIMITS)
    first = ZYGOTE.pid
    assert len(os.listdir(f"/proc/{first}/task")) == 1  # one thread: forking it is safe
    os.kill(first, signal.SIGKILL)
    assert vet_in_child(healthy, meta, LIMITS).parameters == 1460 and ZYGOTE.pid != first
    script = ("import sys; sys.path.insert(0, {root!r}); from tests.model_files import metadata, onnx_bytes, tiny_net; "
              "from tests.worker.test_model_vetting import LIMITS; from worker.model_vetting import ZYGOTE, vet_in_child; "
              "vet_in_child(onnx_bytes(tiny_net(), (64, 64)), metadata('t', (64, 64), ['a', 'b', 'c', 'd']), LIMITS); print(ZYGOTE.pid)")
    import subprocess
    import sys

    from tests.e2e.servers import ROOT

    done = subprocess.run([sys.executable, "-c", script.format(root=str(ROOT))], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    orphan = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{orphan}").exists() and b"vetting_zygote" in Path(f"/proc/{orphan}/cmdline").read_bytes():
        assert time.monotonic() < deadline, "the zygote outlived the process that started it"
        time.sleep(0.1)
