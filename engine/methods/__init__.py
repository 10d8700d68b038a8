"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
from engine.synthesis import inversion, style_transfer, texture  # noqa: F401
