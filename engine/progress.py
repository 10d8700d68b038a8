"""The progress callback contract shared by every method.

Engine code calls ``progress(step, total, preview=None, **info)`` and never
prints or draws bars. The callback may raise :class:`engine.errors.Cancelled`
to stop a run cooperatively at the next step.
"""

from typing import Any, Protocol

from PIL import Image


class Progress(Protocol):
    def __call__(self, step: int, total: int, preview: Image.Image | None = None, **info: Any) -> None: ...


def no_progress(step: int, total: int, preview: Image.Image | None = None, **info: Any) -> None:
    """Default callback: ignore progress."""
