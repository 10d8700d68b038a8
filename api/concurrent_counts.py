"""How many of something each key or tenant has going at once in this process, each up to a cap.

The inline pool counts each key's calls running or waiting (:mod:`api.inline_pool`), the event
streams each tenant's open streams (:mod:`api.event_streams`): one count, taken before the work
starts and given back when it ends, however it ends. Kept in the process on purpose: what it
bounds (threads, Redis connections, file descriptors) is the process's own, and a process that
dies takes its counts with it (nothing is left to expire).
"""

import threading
from collections import Counter


class ConcurrentCounts:
    def __init__(self):
        self._lock = threading.Lock()  # taken and given back from the event loop and from pool threads
        self._counts: Counter[str] = Counter()

    def __getitem__(self, who: str) -> int:
        return self._counts[who]

    def take(self, who: str, cap: int) -> bool:
        """Count one more for ``who`` unless it has ``cap`` already (0: no cap); False when refused."""
        with self._lock:
            if 0 < cap <= self._counts[who]:
                return False
            self._counts[who] += 1
            return True

    def give_back(self, who: str) -> None:
        with self._lock:
            self._counts[who] -= 1
            if self._counts[who] <= 0:
                del self._counts[who]
