"""The README's quick-start calls, run as written against the real stack, each example timed.

The second bash block of README.md's "Quick start" (the curl calls, one per method family) runs in
one bash process, with ``H`` pointed at a loopback stack (redis-server, one Celery worker ``-c 1``,
uvicorn, as ``scripts/serve`` runs them) and the pictures it names written beside it: ``cat.jpg`` and
``content.jpg`` are scikit-image's chelsea, ``style.jpg`` its immunohistochemistry slide (a texture with
nothing of a cat). Each example is the commands under one comment line; its wall time, from the first
command to the last one's end, is printed against the issue's limit of one minute, and the jobs must
have succeeded. The models are warmed first (``CONVLENS_WARM_MODELS``), as a running service has them.

    PYTHONPATH=. .venv/bin/python bench/bench_quickstart.py
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.bench_jobs import _ready, stack_env, start_api  # noqa: E402
from tests.e2e.servers import CeleryWorker, RedisServer, wait_for  # noqa: E402

LIMIT_S = 60.0


def quick_start_calls() -> list[tuple[str, list[str]]]:
    """The curl block of the quick start: (the example's comment, its commands), continuation lines joined."""
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    block = next(b for b in blocks if "curl" in b)
    examples: list[tuple[str, list[str]]] = []
    command = ""
    for line in block.splitlines():
        if line.startswith("#"):
            if not examples or examples[-1][1]:
                examples.append((line.lstrip("# ").split(":")[0], []))
            continue
        command += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
        if not line.endswith("\\") and command.strip():
            if command.startswith("H="):
                command = ""
                continue
            examples[-1][1].append(command.strip())
            command = ""
    return examples


def script(examples: list[tuple[str, list[str]]]) -> str:
    """One bash script running every command, printing each example's seconds and the jobs' final states."""
    lines = ["set -e"]
    for number, (_name, commands) in enumerate(examples):
        lines.append("start=$EPOCHREALTIME")
        lines += [f"{command} > out_{number}_{k}.txt" for k, command in enumerate(commands)]
        lines.append(f'echo "example {number} $(echo "$EPOCHREALTIME - $start" | bc)"')
    return "\n".join(lines) + "\n"


def main() -> None:
    examples = quick_start_calls()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        work = tmp / "client"
        work.mkdir()
        Image.fromarray(data.chelsea()).save(work / "cat.jpg", quality=92)
        Image.fromarray(data.chelsea()).save(work / "content.jpg", quality=92)
        Image.fromarray(data.immunohistochemistry()).save(work / "style.jpg", quality=92)
        redis_server = RedisServer(tmp / "redis").start()
        env = stack_env(tmp, redis_server.url, CONVLENS_WARM_MODELS='["efficientnet_lite0", "vgg19"]')
        worker = CeleryWorker(env, tmp / "worker.log").start()
        api_process, base_url = start_api(env)
        try:
            with httpx.Client(base_url=base_url, timeout=60) as api:
                wait_for(lambda: _ready(api), 300, "the API", interval=0.3)
            (work / "quickstart.sh").write_text(script(examples))
            run = subprocess.run(["bash", "quickstart.sh"], cwd=work, env={"PATH": "/usr/bin:/bin", "H": base_url},
                                 capture_output=True, text=True, timeout=600)
            seconds = dict(line.split()[1:] for line in run.stdout.splitlines() if line.startswith("example "))
            print(f"README quick start against {base_url} (2-core CPU, no GPU); limit {LIMIT_S:g} s per example")
            for number, (name, commands) in enumerate(examples):
                took = float(seconds.get(str(number), "nan"))
                outputs = " ".join((work / f"out_{number}_{k}.txt").read_text(errors="replace") for k in range(len(commands))
                                   if (work / f"out_{number}_{k}.txt").exists())
                job_ok = "succeeded" in outputs if "/v1/jobs" in " ".join(commands) else True
                verdict = "ok" if took <= LIMIT_S and job_ok else "OVER THE LIMIT" if took > LIMIT_S else "JOB DID NOT SUCCEED"
                print(f"  {name:<12} {took:7.2f} s  {len(commands)} command(s)  {verdict}")
            if run.returncode:
                print(f"the script failed ({run.returncode}): {run.stderr[-2000:]}")
        finally:
            api_process.terminate()
            api_process.wait(10)
            worker.stop()
            redis_server.stop()


if __name__ == "__main__":
    main()
