"""Entry point of the worker process: ``celery -A worker.app worker -Q gpu,cpu -c 1``.

Reads the settings, imports plugin methods and the built-in ones in the
parent (so children inherit them), and leaves models and CUDA alone: each
pool child loads its models lazily on its first job (``engine.models.load_model``
caches them per process), after the fork. The main process also runs the reaper (:mod:`worker.reaper`).
"""

from celery.signals import after_setup_logger, after_setup_task_logger, worker_ready, worker_shutdown

from engine.registry import all_methods
from worker.allocator import keep_freed_memory
from worker.logs import use_json
from engine.models.zoo import CACHE
from worker.plugins import load_plugins
from worker.queue_app import create_celery
from worker.reaper import Reaper
from worker.settings import get_settings

settings = get_settings()
keep_freed_memory(settings.malloc_keep_bytes)  # before the fork: the pool children inherit it
CACHE.resize(settings.model_cache_bytes)  # registered models are looked up in the shared store per job, loaded lazily in the child
load_plugins(settings)
all_methods()
app = create_celery(settings)

if settings.log_format == "json":
    after_setup_logger.connect(lambda logger, *args, **kwargs: use_json(logger), weak=False)
    after_setup_task_logger.connect(lambda logger, *args, **kwargs: use_json(logger), weak=False)

_reaper = Reaper(app, settings)


@worker_ready.connect
def _start_reaper(**_) -> None:
    _reaper.start()


@worker_shutdown.connect
def _stop_reaper(**_) -> None:
    _reaper.stopped.set()
