"""Hooks as context managers that always undo themselves.

Every hook registered here is removed in ``finally``, whatever happens inside
the ``with`` block: a long-lived worker must never accumulate hooks. Hooks
fire only for forward passes of the thread that registered them, so
concurrent calls on one shared model never see each other's hooks.
"""

import threading
from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


class StopForward(Exception):
    """Raised by a capture hook to end a forward pass after its deepest layer."""


def this_thread_only(hook):
    """``hook`` (a forward or forward-pre hook) doing nothing in passes run by other threads than the caller's."""
    owner = threading.get_ident()

    def scoped(module, *args):
        if threading.get_ident() == owner:
            return hook(module, *args)
        return None

    return scoped


@contextmanager
def capture(
    modules: dict[str, nn.Module], stop_early: bool = False, detach: bool = False, inputs: frozenset[str] = frozenset()
) -> Iterator[dict[str, torch.Tensor]]:
    """Record the outputs of ``modules`` (name -> module) during forward passes; for the
    names in ``inputs``, the module's (first) input instead.

    With ``stop_early`` the forward pass is cut short (``StopForward``) as soon
    as every module has produced what is recorded, so no layer deeper than needed
    runs; call the model through :func:`run_until` to swallow it. Tensors stay
    attached to the autograd graph unless ``detach``. When one ``with`` block
    runs several passes, clear the yielded dict before each one.
    """
    outputs: dict[str, torch.Tensor] = {}
    handles = []

    def record(name: str, value: torch.Tensor) -> None:
        outputs[name] = value.detach() if detach else value
        if stop_early and len(outputs) == len(modules):
            raise StopForward

    def make_hook(name: str):
        return lambda _module, _inputs, output: record(name, output)

    def make_pre_hook(name: str):
        return lambda _module, args: record(name, args[0])

    try:
        for name, module in modules.items():
            if name in inputs:
                handles.append(module.register_forward_pre_hook(this_thread_only(make_pre_hook(name))))
            else:
                handles.append(module.register_forward_hook(this_thread_only(make_hook(name))))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def run_until(model: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """Call ``model(x)``; returns its output, or None if a capture hook stopped it early."""
    try:
        return model(x)
    except StopForward:
        return None


def hook_count(model: nn.Module) -> int:
    """How many hooks of any kind are attached to ``model`` (for leak tests)."""
    total = 0
    for module in model.modules():
        for attr in (
            "_forward_hooks",
            "_forward_pre_hooks",
            "_backward_hooks",
            "_backward_pre_hooks",
            "_forward_hooks_with_kwargs",
            "_state_dict_hooks",
        ):
            total += len(getattr(module, attr, {}) or {})
    return total
