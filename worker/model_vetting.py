"""Vetting a stranger's model file in a child process of its own: the one place it runs before it is proven harmless.

:func:`vet_in_child` runs the whole of :func:`engine.models.vetting.vet`
(sniffing, reading, converting, the static checks, the forward passes and the
capability probes) in a child process, and turns every way that process can
end into a :class:`~engine.models.vetted.Vetted` or a 4xx
:class:`~engine.errors.ModelRejected`:

- never in a fork of the API: every child is forked by the vetting zygote
  (:mod:`worker.vetting_zygote`), a fresh interpreter started once per process
  with ``sys.executable -I`` (isolated mode: no ``PYTHON*`` variables, no user
  site, no working directory on ``sys.path``), an environment of ``PATH``,
  locale, ``HOME``/``TMPDIR`` (a temporary directory) and thread counts only,
  no GPU (``CUDA_VISIBLE_DEVICES`` empty), an empty working directory, ``nice``
  and one torch thread. It holds none of the API's keys, connections or
  threads, imports torch, onnx and onnx2torch once (about 5 s of CPU that a
  fresh interpreter per file would pay every time) and never vets anything
  itself, so every child starts from the same clean state and none sees
  another's file;
- each child moves into an empty directory of its own (removed after it ends),
  gets the file and answers on its own socket (no file shared), and sets its
  caps before reading the model: ``RLIMIT_CPU`` (SIGXCPU, then SIGKILL at the
  hard limit), no core files, ``RLIMIT_FSIZE``; and, with the file in memory,
  ``RLIMIT_AS`` at what it then maps plus ``model_vetting_memory_bytes``.
  Address space rather than resident memory, because an allocation over the cap
  then fails at once and cleanly (``MemoryError``, torch's "can't allocate
  memory") instead of the machine swapping or the OOM killer picking a victim;
  measured rather than fixed, because importing torch maps about 4 GB of
  address space it never touches;
- the parent waits at most ``model_vetting_seconds`` of wall clock, then
  kills the child's process group; a child killed by any signal is a 422
  ``model_crashed``, never a 500 or a hang;
- at most ``model_vetting_concurrency`` children at once (:class:`ModelVetter`).
"""

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError, ModelRejected
from engine.models.registered import RegistrationLimits
from engine.models.formats import FILE_FORMATS
from engine.models.vetted import Vetted
from worker.settings import Settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
_BOOT = "import sys; sys.path.insert(0, {root!r}); from worker.vetting_zygote import main; main({socket!r})"
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


class VettingUnavailable(EngineError):
    """The vetting zygote failed twice in a row."""

    code = "vetting_unavailable"


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
    """:func:`engine.models.vetting.vet` of ``data`` in a capped child of the vetting zygote (ModelRejected if refused).

    A zygote that died (its connection refused or broken) is started again and the file vetted once more.
    """
    try:
        return _vet_once(data, metadata, limits)
    except OSError as exc:
        log.warning("the model vetting zygote failed (%s); starting a new one", exc)
        ZYGOTE.discard()
    try:
        return _vet_once(data, metadata, limits)
    except OSError as exc:
        raise VettingUnavailable(f"model vetting is unavailable ({exc}); try again later") from None


def _vet_once(data: bytes, metadata: str | bytes | dict, limits: VettingLimits) -> Vetted:
    if isinstance(metadata, bytes):
        metadata = metadata.decode("utf-8", errors="replace")
    request = json.dumps({"metadata": metadata, "limits": dataclasses.asdict(limits.model),
                          "cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes}).encode() + b"\n"
    deadline = time.monotonic() + limits.seconds
    with ZYGOTE.connect() as connection:
        connection.sendall(request + data)
        connection.shutdown(socket.SHUT_WR)
        answer = _Reader(connection, deadline)
        pid = int(answer.field("pid"))
        try:
            reply, returncode = answer.reply_and_exit()
        except TimeoutError:
            _kill_group(pid)
            answer.wait_for_exit(seconds=5)  # the zygote has reaped it once it says so
            raise ModelRejected(
                "model_too_slow", f"vetting the model took longer than {limits.seconds:g} s (setting CONVLENS_MODEL_VETTING_SECONDS)",
            ) from None
    return _answer(returncode, reply, data, limits)


class _Reader:
    """Reads the child's and the zygote's lines off one connection, each read bounded by the deadline."""

    def __init__(self, connection: socket.socket, deadline: float):
        self.connection, self.deadline, self.buffer = connection, deadline, b""

    def _more(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.connection.settimeout(left)
        try:
            chunk = self.connection.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError from None
        if not chunk:
            raise ConnectionError("the vetting zygote closed the connection before the child's exit status")
        self.buffer += chunk

    def field(self, name: str) -> str:
        while b"\n" not in self.buffer:
            self._more()
        line, self.buffer = self.buffer.split(b"\n", 1)
        found, _, value = line.decode().partition(" ")
        if found != name:
            raise ConnectionError(f"the vetting zygote said {line[:80]!r} where {name!r} belongs")
        return value

    def wait_for_exit(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        try:
            while b"exit " not in self.buffer:
                self._more()
        except (TimeoutError, ConnectionError):
            log.warning("the vetting zygote did not report a killed child's end within %g s", seconds)

    def reply_and_exit(self) -> tuple[bytes, int]:
        while b"\n" not in self.buffer:
            self._more()
        reply = b""
        if self.buffer.startswith(b"reply "):
            length = int(self.field("reply"))
            while len(self.buffer) < length:
                self._more()
            reply, self.buffer = self.buffer[:length], self.buffer[length:]
        return reply, int(self.field("exit"))


class Zygote:
    """This process's vetting zygote (:mod:`worker.vetting_zygote`), started on first use and again if it died.

    It ends with this process: its stdin is a pipe from here, and it stops serving once that closes.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._socket = ""

    def connect(self) -> socket.socket:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            connection.connect(self._socket)
            return connection

    def discard(self) -> None:
        """Forget (and end) the current zygote: the next connection starts a new one."""
        with self._lock:
            if self._process is not None:
                self._process.kill()
                self._process.wait()
            self._process = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _start(self) -> None:
        home = Path(tempfile.mkdtemp(prefix="convlens-zygote-"))
        (home / "cwd").mkdir()
        self._socket = str(home / "socket")
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOT.format(root=str(ROOT), socket=self._socket)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, cwd=home / "cwd", env=child_environment(home), start_new_session=True,
        )
        if self._process.stdout.readline() != b"ready\n":
            self._process.kill()
            raise RuntimeError("the model vetting zygote did not start")


ZYGOTE = Zygote()


def child_environment(home: Path) -> dict[str, str]:
    """What the vetting processes may see: nothing of the service's configuration or secrets; ``home`` is HOME and TMPDIR."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "HOME": str(home), "TMPDIR": str(home), "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2",
    }
    if "LD_LIBRARY_PATH" in os.environ:  # where an image keeps torch's native libraries
        environment["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
    return environment


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _answer(returncode: int, reply: bytes, data: bytes, limits: VettingLimits) -> Vetted:
    """The child's answer, or the refusal its way of ending means."""
    if returncode < 0:
        name = signal.Signals(-returncode).name
        if -returncode == signal.SIGXCPU:  # RLIMIT_CPU's soft limit
            raise ModelRejected(
                "model_too_slow", f"vetting the model used more than {limits.cpu_seconds:g} s of CPU time (setting CONVLENS_MODEL_VETTING_SECONDS)",
            )
        log.warning("model vetting child killed by %s", name)
        raise ModelRejected("model_crashed", f"the process vetting the model was killed by {name}; the model cannot be registered")
    head, _, rest = reply.partition(b"\n")
    if returncode != 0 or not head:
        raise RuntimeError(f"the model vetting child failed (exit {returncode})")
    answer = json.loads(head)
    if "out_of_memory" in answer:
        raise ModelRejected(
            "model_memory_limit",
            f"vetting the model needed more than {limits.memory_bytes:,} bytes of memory ({answer['out_of_memory']}; "
            "setting CONVLENS_MODEL_VETTING_MEMORY_BYTES)",
        )
    if "rejected" in answer:
        code, message = answer["rejected"]["code"], answer["rejected"]["message"]
        if answer.get("unexpected"):
            log.warning("model vetting failed unexpectedly: %s", message)
        setting = _SETTING_OF.get(code)
        raise ModelRejected(code, f"{message} (setting {setting})" if setting else message)
    onnx = data if answer["onnx_bytes"] is None else rest[: answer["onnx_bytes"]]
    return Vetted.from_record(answer["vetted"], onnx)


# -- the zygote and its children ------------------------------------------------------------------


def prepare_vetting_process() -> None:
    """In the zygote, once: lower priority and everything vetting imports. No tensor operation runs here: torch's
    thread pool, once made, is invalid in a forked child (torch asserts, and the child aborts)."""
    import onnx2torch  # noqa: F401
    import torch.onnx  # noqa: F401

    import engine.models.vetting  # noqa: F401

    os.nice(10)


def vet_confined(request_line: bytes, data: bytes) -> bytes:
    """In a forked child: set the caps, vet, and return the answer (a JSON line, then a translation's ONNX bytes)."""
    import torch

    torch.set_num_threads(1)  # its pool is made here, in the child
    torch.set_num_interop_threads(1)
    request = json.loads(request_line)
    _confine(request["cpu_seconds"], request["memory_bytes"])
    try:
        reply, onnx = _vet(data, request)
    except BaseException as exc:  # noqa: BLE001 - the child answers for every way vetting can end
        reply, onnx = _failure(exc), b""
    return json.dumps(reply).encode() + b"\n" + onnx


def _confine(cpu_seconds: float, memory_bytes: int) -> None:
    """Caps the child sets on itself before the model is read: its CPU time (counted from the fork) and address space."""
    import resource

    limit = int(cpu_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (limit, limit + 5))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_SIZE_LIMIT, _FILE_SIZE_LIMIT))
    mapped = _mapped_bytes()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + memory_bytes, mapped + memory_bytes))


def _vet(data: bytes, request: dict) -> tuple[dict, bytes]:
    from engine.models.vetting import vet

    vetted = vet(data, request["metadata"], RegistrationLimits(**request["limits"]))
    if not FILE_FORMATS[vetted.format].translated:  # the file itself: the parent has it
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
