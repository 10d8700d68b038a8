"""Wall-clock laps for ``data["timings"]``."""

import time


class Stopwatch:
    """Milliseconds since creation, per named lap."""

    def __init__(self):
        self.start = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = (now - self.start) * 1000.0
        self.start = now
