"""The per-process cache of loaded models: least recently used out, by memory.

Models are kept while their parameters and buffers together fit in
``max_bytes``; loading one more evicts the least recently used until it fits.
The model just loaded always stays, even alone over the limit (a request is
using it). An evicted model lives on while a running method still holds it,
and is loaded again on its next use. One lock covers loading, so two threads
asking for one model load it once.
"""

import threading
from collections import OrderedDict
from typing import Callable, Hashable

from torch import nn


def model_bytes(module: nn.Module) -> int:
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelCache:
    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: "OrderedDict[Hashable, tuple[nn.Module, int]]" = OrderedDict()
        self._lock = threading.RLock()

    def get(self, key: Hashable, load: Callable[[], nn.Module]) -> nn.Module:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            model = load()
            self._items[key] = (model, model_bytes(model))
            self._shrink()
            return model

    def evict(self, matches: Callable[[Hashable], bool]) -> int:
        """Drop every entry whose key ``matches``; returns how many."""
        with self._lock:
            keys = [key for key in self._items if matches(key)]
            for key in keys:
                del self._items[key]
            return len(keys)

    def resize(self, max_bytes: int) -> None:
        with self._lock:
            self.max_bytes = max_bytes
            self._shrink()

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(size for _, size in self._items.values())

    def _shrink(self) -> None:
        while len(self._items) > 1 and self.used_bytes > self.max_bytes:
            self._items.popitem(last=False)
