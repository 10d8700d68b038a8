"""Vetting a stranger's model file in a fresh child process: the one place it runs before it is proven harmless.

:func:`vet_in_child` runs the whole of :func:`engine.models.vetting.vet`
(sniffing, reading, converting, the static checks, the forward passes and the
capability probes) in a new Python process, and turns every way that process
can end into a :class:`~engine.models.vetted.Vetted` or a 4xx
:class:`~engine.errors.ModelRejected`:

- a fresh interpreter, not a fork of the API: ``sys.executable -I`` (isolated
  mode: no ``PYTHON*`` variables, no user site, no working directory on
  ``sys.path``; the repository root is put on ``sys.path`` by the one-line
  bootstrap, since ``PYTHONPATH`` is ignored), so it holds none of the API's
  keys, connections or threads; an empty temporary working directory, removed
  after; an environment of ``PATH``, locale, ``HOME``/``TMPDIR`` (a second
  temporary directory beside it) and thread counts only; no GPU (``CUDA_VISIBLE_DEVICES``
  empty); the file and the answer travel on stdin and stdout, no file shared;
- caps the child sets on itself before reading the model: ``os.nice``, one torch
  thread, ``RLIMIT_CPU`` (SIGXCPU, then SIGKILL at the hard limit: it holds
  even if the parent dies), no core files, ``RLIMIT_FSIZE``; and, after its
  imports and the file are in memory, ``RLIMIT_AS`` at what it then maps plus
  ``model_vetting_memory_bytes``. Address space rather than resident memory,
  because an allocation over the cap then fails at once and cleanly
  (``MemoryError``, torch's "can't allocate memory") instead of the machine
  swapping or the OOM killer picking a victim; measured rather than fixed,
  because importing torch maps about 4 GB of address space it never touches;
- the parent waits at most ``model_vetting_seconds`` of wall clock, then
  kills the child's whole process group; a child killed by any signal is a 422
  ``model_crashed``, never a 500 or a hang;
- at most ``model_vetting_concurrency`` children at once (:class:`ModelVetter`).

A subprocess per registration costs the imports of torch, onnx and onnx2torch
(about 5 s of CPU) each time; registration is rare, and a reused child would
keep one hostile vetting's state for the next. A forkserver that only preloads
the imports (and never vets itself) could save that time.
"""

import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError, ModelRejected
from engine.models.registered import RegistrationLimits
from engine.models.vetted import Vetted
from worker.settings import Settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
_BOOT = "import sys; sys.path.insert(0, {root!r}); from worker.model_vetting import child_main; child_main()"
_FILE_SIZE_LIMIT = 16 * 2**20  # the child writes nothing but its stderr
_SETTING_OF = {  # the engine's refusals at a limit, and the setting that raises it
    "too_many_parameters": "CONVLENS_MAX_MODEL_PARAMETERS",
    "too_many_nodes": "CONVLENS_MAX_MODEL_NODES",
    "tensor_too_large": "CONVLENS_MAX_MODEL_TENSOR_BYTES",
    "model_too_large": "CONVLENS_MAX_MODEL_BYTES",
    "model_too_slow": "CONVLENS_MODEL_FORWARD_SECONDS",
}


class VettingBusy(EngineError):
    """Every vetting slot stayed taken for as long as one vetting may last."""

    code = "vetting_busy"


@dataclass(frozen=True)
class VettingLimits:
    model: RegistrationLimits  # what the checks in the child enforce
    seconds: float  # wall clock of the child, from its start
    cpu_seconds: float  # CPU time of the vetting, after the child's imports
    memory_bytes: int  # address space beyond the child's imports and the file

    @classmethod
    def from_settings(cls, settings: Settings) -> "VettingLimits":
        model = RegistrationLimits(
            settings.max_model_parameters, settings.model_forward_seconds,
            settings.max_model_nodes, settings.max_model_tensor_bytes, settings.max_model_bytes,
        )
        return cls(model, settings.model_vetting_seconds, settings.model_vetting_seconds, settings.model_vetting_memory_bytes)


class ModelVetter:
    """Vets model files in child processes, at most ``model_vetting_concurrency`` at once."""

    def __init__(self, settings: Settings):
        self.limits = VettingLimits.from_settings(settings)
        self._slots = threading.BoundedSemaphore(settings.model_vetting_concurrency)

    def vet(self, data: bytes, metadata: str | bytes | dict) -> Vetted:
        if not self._slots.acquire(timeout=self.limits.seconds):
            raise VettingBusy(f"every model vetting slot was busy for {self.limits.seconds:g} s; try again later")
        try:
            return vet_in_child(data, metadata, self.limits)
        finally:
            self._slots.release()


# -- the parent -----------------------------------------------------------------------------------


def vet_in_child(data: bytes, metadata: str | bytes | dict, limits: VettingLimits) -> Vetted:
    """:func:`engine.models.vetting.vet` of ``data`` in a fresh, capped child process (ModelRejected if refused)."""
    if isinstance(metadata, bytes):
        metadata = metadata.decode("utf-8", errors="replace")
    request = json.dumps({"metadata": metadata, "limits": dataclasses.asdict(limits.model),
                          "cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes}).encode() + b"\n"
    workdir = Path(tempfile.mkdtemp(prefix="convlens-vetting-"))
    cwd, home = workdir / "cwd", workdir / "home"  # cwd stays empty: stderr and torch's own temporary files go beside it
    cwd.mkdir()
    home.mkdir()
    try:
        with open(workdir / "stderr", "w+b") as errors:
            with subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT.format(root=str(ROOT))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=errors, cwd=cwd, env=child_environment(home), start_new_session=True,
            ) as child:
                try:
                    out, _ = child.communicate(request + data, timeout=limits.seconds)
                except subprocess.TimeoutExpired:
                    raise ModelRejected(
                        "model_too_slow", f"vetting the model took longer than {limits.seconds:g} s (setting CONVLENS_MODEL_VETTING_SECONDS)",
                    ) from None
                finally:
                    _kill_group(child)  # on time out; and the group may outlive a leader that left children behind
            errors.seek(max(0, errors.seek(0, os.SEEK_END) - 4000))
            tail = errors.read().decode(errors="replace")
        return _answer(child.returncode, out, data, limits, tail)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def child_environment(home: Path) -> dict[str, str]:
    """What the child may see: nothing of the service's configuration or secrets; ``home`` is its HOME and TMPDIR."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": str(home), "TMPDIR": str(home), "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
    }
    if "LD_LIBRARY_PATH" in os.environ:  # where an image keeps torch's native libraries
        environment["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return environment


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


def _answer(returncode: int, out: bytes, data: bytes, limits: VettingLimits, stderr_tail: str) -> Vetted:
    """The child's answer, or the refusal its way of ending means."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if -returncode == signal.SIGXCPU:  # RLIMIT_CPU's soft limit
            raise ModelRejected(
                "model_too_slow", f"vetting the model used more than {limits.cpu_seconds:g} s of CPU time (setting CONVLENS_MODEL_VETTING_SECONDS)",
            )
        log.warning("model vetting child killed by %s; its stderr ended: %s", name, stderr_tail)
        raise ModelRejected("model_crashed", f"the process vetting the model was killed by {name}; the model cannot be registered")
    head, _, rest = out.partition(b"\n")
    if returncode != 0 or not head:
        raise RuntimeError(f"the model vetting child failed (exit {returncode}): {stderr_tail}")
    reply = json.loads(head)
    if "out_of_memory" in reply:
        raise ModelRejected(
            "model_memory_limit",
            f"vetting the model needed more than {limits.memory_bytes:,} bytes of memory ({reply['out_of_memory']}; "
            "setting CONVLENS_MODEL_VETTING_MEMORY_BYTES)",
        )
    if "rejected" in reply:
        code, message = reply["rejected"]["code"], reply["rejected"]["message"]
        if reply.get("unexpected"):
            log.warning("model vetting failed unexpectedly: %s; stderr: %s", message, stderr_tail)
        setting = _SETTING_OF.get(code)
        raise ModelRejected(code, f"{message} (setting {setting})" if setting else message)
    onnx = data if reply["onnx_bytes"] is None else rest[: reply["onnx_bytes"]]
    return Vetted.from_record(reply["vetted"], onnx)


# -- the child --------------------------------------------------------------------------------------


def child_main() -> None:
    """Read a request and a file on stdin, vet it under caps, answer on stdout (see :func:`vet_in_child`)."""
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library's stray print lands in stderr, never in the answer
    request = json.loads(sys.stdin.buffer.readline())
    data = sys.stdin.buffer.read()
    _confine(request["cpu_seconds"])
    try:
        reply, onnx = _vet(data, request)
    except BaseException as exc:  # noqa: BLE001 - the child answers for every way vetting can end
        reply, onnx = _failure(exc), b""
    answer.write(json.dumps(reply).encode() + b"\n" + onnx)
    answer.flush()


def _confine(cpu_seconds: float) -> None:
    """Caps the child sets on itself before the model is read (memory comes after the imports)."""
    import resource

    import torch

    os.nice(10)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    used = resource.getrusage(resource.RUSAGE_SELF)
    limit = int(used.ru_utime + used.ru_stime + cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT, _FILE_SIZE_LIMIT))


def _vet(data: bytes, request: dict) -> tuple[dict, bytes]:
    import resource

    import onnx2torch  # noqa: F401 - imported before the memory cap is measured
    import torch
    import torch.onnx  # noqa: F401

    from engine.models.vetting import vet

    torch.nn.functional.conv2d(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 3))  # the kernels' own buffers, before the cap
    mapped = _mapped_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + request["memory_bytes"], mapped + request["memory_bytes"]))
    vetted = vet(data, request["metadata"], RegistrationLimits(**request["limits"]))
    if vetted.format == "onnx":  # the file itself: the parent has it
        return {"vetted": vetted.as_record(), "onnx_bytes": None}, b""
    return {"vetted": vetted.as_record(), "onnx_bytes": len(vetted.onnx)}, vetted.onnx


def _mapped_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def _failure(exc: BaseException) -> dict:
    """The reply for an exception out of vetting: out of memory, a refusal, or an unexpected failure."""
    memory = _out_of_memory(exc)
    if memory is not None:
        return {"out_of_memory": memory}
    if isinstance(exc, ModelRejected):
        return {"rejected": {"code": exc.code, "message": exc.message}}
    import traceback

    traceback.print_exception(exc)
    return {"rejected": {"code": "model_failed", "message": f"vetting failed: {type(exc).__name__}: {str(exc)[:500]}"}, "unexpected": True}


def _out_of_memory(exc: BaseException) -> str | None:
    """What failed to allocate, when ``exc`` or an exception it arose from is an allocation failure."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        if isinstance(exc, MemoryError) or "can't allocate memory" in text or "std::bad_alloc" in text:
            return text.splitlines()[0][:300] if text else type(exc).__name__
        exc = exc.__cause__ or exc.__context__
    return None
