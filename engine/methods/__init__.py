"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
