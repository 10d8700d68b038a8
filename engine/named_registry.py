"""One small mechanism for every registry of named things (methods, models).

A :class:`Registry` maps names to items, refuses a name twice, raises the
registry's own "unknown" error (naming what is available) and imports its
built-ins lazily on first use, so importing a registry loads nothing heavy.
Registration and removal are atomic, so two registrations of one name race
to exactly one winner.
"""

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class NameTaken(ValueError):
    """A second registration of a name that is already registered."""


class Registry(Generic[T]):
    def __init__(self, kind: str, unknown: type[Exception], builtins: Callable[[], None]):
        self.kind = kind
        self._unknown = unknown
        self._builtins = builtins
        self._items: dict[str, T] = {}
        self._lock = threading.RLock()
        self._loaded = False
        self._loading = False

    def add(self, name: str, item: T) -> T:
        with self._lock:
            if name in self._items:
                raise NameTaken(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
        return item

    def remove(self, name: str) -> T:
        self._ensure_builtins()
        with self._lock:
            if name not in self._items:
                raise self._unknown(self._unknown_message(name))
            return self._items.pop(name)

    def get(self, name: str) -> T:
        self._ensure_builtins()
        with self._lock:
            if name not in self._items:
                raise self._unknown(self._unknown_message(name))
            return self._items[name]

    def all(self) -> list[T]:
        self._ensure_builtins()
        with self._lock:
            return list(self._items.values())

    def __contains__(self, name: str) -> bool:
        self._ensure_builtins()
        return name in self._items

    def _unknown_message(self, name: str) -> str:
        return f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self._items))}"

    def _ensure_builtins(self) -> None:
        if self._loaded:
            return
        with self._lock:  # other threads wait here until every built-in is in
            if self._loaded or self._loading:  # _loading: a built-in module looked itself up
                return
            self._loading = True
            try:
                self._builtins()
                self._loaded = True
            finally:
                self._loading = False
