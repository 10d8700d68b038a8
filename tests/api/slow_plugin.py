"""Test-only inline method (loaded through CONVLENS_PLUGINS): sleeps, after touching a marker file."""

import os
import time
from pathlib import Path

from pydantic import Field

from engine.cost import Cost
from engine.params import Params
from engine.registry import method
from engine.result import Result


class NapParams(Params):
    seconds: float = Field(1.0, ge=0, le=30, description="how long to sleep")


def nap(model, inputs, params: NapParams, progress) -> Result:
    Path(os.environ["CONVLENS_TEST_NAP_MARKER"]).touch()  # tells the test the call is running
    time.sleep(params.seconds)
    return Result(data={"slept": params.seconds})


method("nap", summary="Test: sleeps inline", category="inspect", params=NapParams, inline=True,
       cost=lambda model, params, images: Cost(0, 0, 0))(nap)
