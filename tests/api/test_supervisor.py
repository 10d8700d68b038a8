"""The launcher's supervision (api.supervisor) on real short-lived processes, and its embedded Redis
restarted on its port with its data (api.serve): backoff that doubles, stops at its cap and starts
over after a healthy run; a dead child's process group cleared; a taken port waited for."""

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis

from api.serve import _quiet_port, _redis
from api.supervisor import Child, Supervisor
from tests.e2e.servers import alive, wait_for


def shell(script: str):
    return lambda: subprocess.Popen(["/bin/sh", "-c", script], process_group=0)


def supervise(supervisor: Supervisor, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        supervisor.check()
        time.sleep(0.01)


def delays(err: str) -> list[float]:
    return [float(seconds) for seconds in re.findall(r"(?:restarting it|trying again) in ([\d.]+) s", err)]


def test_a_child_that_keeps_dying_is_restarted_with_doubling_delays_up_to_the_cap(capsys):
    child = Child("crasher", shell("exit 3"), grace=1)
    supervisor = Supervisor([child], base_delay=0.05, max_delay=0.2, healthy_seconds=10)
    supervisor.start(child)
    supervise(supervisor, 1.6)
    supervisor.stop()
    err = capsys.readouterr().err
    assert "ConvLens: crasher exited with code 3 after 0 s; restarting it in 0.05 s" in err
    assert delays(err)[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert "(restart 4 in a row)" in err


def test_the_backoff_starts_over_after_a_healthy_run(capsys):
    child = Child("flaky", shell("sleep 0.15; exit 1"), grace=1)
    supervisor = Supervisor([child], base_delay=0.05, max_delay=1, healthy_seconds=0.1)
    supervisor.start(child)
    supervise(supervisor, 0.8)
    supervisor.stop()
    found = delays(capsys.readouterr().err)
    assert len(found) >= 3 and set(found) == {0.05}


def test_what_is_left_of_a_dead_childs_process_group_is_killed_before_it_restarts(tmp_path, capsys):
    """Like a Celery worker's pool child when its main process is killed: never two workers."""
    orphan_file = tmp_path / "orphan"
    child = Child("worker", shell(f"sleep 30 & echo $! > {orphan_file}; kill -9 $$"), grace=1)
    supervisor = Supervisor([child], base_delay=5)
    supervisor.start(child)
    orphan = int(wait_for(lambda: orphan_file.exists() and orphan_file.read_text().strip(), 5, "the orphan's pid"))
    wait_for(lambda: supervisor.check() or child.process is None, 5, "the death to be noticed")
    assert "ConvLens: worker was killed by SIGKILL" in capsys.readouterr().err
    wait_for(lambda: not alive(orphan), 5, "the orphan to be gone")


def test_redis_comes_back_on_its_port_with_its_data_once_the_port_is_free_again(tmp_path, capsys):
    port = _quiet_port("127.0.0.1")
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert port < low  # outside the range the kernel hands out to "any free port" and to outgoing connections
    child = _redis(port, tmp_path / "redis", dict(os.environ))
    supervisor = Supervisor([child], base_delay=0.1, max_delay=0.4)
    supervisor.start(child)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        wait_for(lambda: _pings(client), 10, "redis-server")
        client.set("kept", "yes")  # acknowledged: in the append-only file (the kernel's cache) already
        squatter = socket.socket()
        os.kill(child.process.pid, signal.SIGKILL)
        wait_for(lambda: supervisor.check() or child.process is None, 5, "the death to be noticed")
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        supervise(supervisor, 0.5)
        assert child.process is None
        err = capsys.readouterr().err
        assert f"redis not restarted: port {port}, which the other children use to reach it, is taken" in err
        squatter.close()
        wait_for(lambda: supervisor.check() or child.process is not None, 5, "the restart")
        wait_for(lambda: _pings(client), 10, "the restarted redis-server")
        assert client.get("kept") == b"yes"
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        supervisor.stop()


def _pings(client: redis.Redis) -> bool:
    try:
        return client.ping()
    except redis.exceptions.ConnectionError:
        return False
