"""Built-in methods; importing this package registers each one."""

from engine.methods import classify  # noqa: F401
from engine.inspect import activations, embedding, filters, max_patches, neighbours  # noqa: F401
from engine.synthesis import fast_style  # noqa: F401
