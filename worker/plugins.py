"""Operator plugins: modules named in ``CONVLENS_PLUGINS`` are imported at API and
worker start, so the methods they register are served like built-in ones."""

import importlib

from worker.settings import Settings


def load_plugins(settings: Settings) -> list[str]:
    for name in settings.plugin_modules():
        importlib.import_module(name)
    return settings.plugin_modules()
