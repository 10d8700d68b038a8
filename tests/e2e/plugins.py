"""Test-only methods, registered through CONVLENS_PLUGINS like an operator's plugin.

``probe_steps`` is a small, honest iterative method: each step is a real
forward pass of the model on the image (the mean activation of a layer is the
reported "loss"; the pass stops at that layer), then a progress report with a preview; an optional sleep
per step makes jobs long enough to cancel or kill mid-run.
``crash_worker`` ends its own process, like a job that segfaults its worker;
``ignore_soft_limit`` swallows Celery's soft time limit, like a job stuck in native code;
``sleep_silently`` sleeps without reporting progress, like one long native call, so only
the last resort (killing its process) cancels it before it returns.
"""

import os
import signal
import time

import torch
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import Field

from engine.hooks import capture, run_until
from engine.imaging import fit_image, to_image, to_tensor
from engine.cost import Cost
from engine import params as p
from engine.params import Params
from engine.registry import method
from engine.result import Result


class ProbeParams(Params):
    steps: int = Field(5, ge=1, le=1000, description="forward passes")
    sleep: float = Field(0.0, ge=0, le=5, description="seconds to wait after each step")
    layer: str | None = Field(None, description="layer whose mean activation is reported (the pass stops there); None: the output")
    size: int = p.size(64, low=16, high=256)


def probe_steps(model, inputs, params: ProbeParams, progress) -> Result:
    image = fit_image(inputs["image"], (params.size, params.size))
    x = to_tensor(image, model.device)
    modules = {params.layer: model.layer(params.layer)} if params.layer else {}
    losses = []
    for step in range(1, params.steps + 1):
        with torch.inference_mode(), capture(modules, stop_early=True) as seen:
            output = run_until(model, x * (1 - 0.01 * step))
        value = next(iter(seen.values())) if modules else output
        losses.append(float(value.float().mean()))
        progress(step, params.steps, preview=to_image(x[0] * (1 - 0.01 * step)), loss=losses[-1])
        if params.sleep:
            time.sleep(params.sleep)
    return Result(images={"final": image}, data={"losses": losses}, main="final")


class CrashParams(Params):
    tag: str = Field("", description="makes otherwise identical submissions distinct")


def crash_worker(model, inputs, params: CrashParams, progress) -> Result:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def ignore_soft_limit(model, inputs, params: CrashParams, progress) -> Result:
    while True:
        try:
            time.sleep(0.1)
        except SoftTimeLimitExceeded:
            pass


class SleepParams(Params):
    seconds: float = Field(5.0, ge=0, le=120, description="how long to sleep")


def sleep_silently(model, inputs, params: SleepParams, progress) -> Result:
    time.sleep(params.seconds)
    return Result(images={"input": inputs["image"]}, data={"slept": params.seconds}, main="input")


def steps_cost(model, params: ProbeParams, images: int) -> Cost:
    return Cost(params.steps, 3 * params.size * params.size, 0)


def no_cost(model, params, images: int) -> Cost:
    return Cost(0, 0, 0)


method("probe_steps", summary="Test: N forward passes with progress", category="inspect", params=ProbeParams, inline=False,
       cost=steps_cost)(probe_steps)
method("crash_worker", summary="Test: kills its worker process", category="inspect", params=CrashParams, inline=False, queue="cpu",
       cost=no_cost)(crash_worker)
method("ignore_soft_limit", summary="Test: never ends by itself", category="inspect", params=CrashParams, inline=False, queue="cpu",
       cost=no_cost)(ignore_soft_limit)
method("sleep_silently", summary="Test: sleeps, never reports progress", category="inspect", params=SleepParams, inline=False, queue="cpu",
       cost=no_cost)(sleep_silently)
