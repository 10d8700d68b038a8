"""The launcher's supervision (api.supervisor) on real short-lived processes: backoff that doubles,
stops at its cap and starts over after a healthy run; a dead child's process group cleared."""

import re
import subprocess
import time

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
