"""API settings: the worker's (broker, jobs, storage) plus what only the API reads.

Environment variables are prefixed ``CONVLENS_`` like the worker's; one
``Settings`` object is read once per process.
"""

from functools import lru_cache

from pydantic import Field

from worker.settings import Settings as WorkerSettings


class Settings(WorkerSettings):
    # answers
    retry_after_seconds: int = Field(2, ge=1, description="Retry-After sent with 503 and 202 answers")
    sse_heartbeat_seconds: float = Field(15.0, gt=0, description="comment lines keeping idle event streams open")
    cancel_grace_seconds: float = Field(
        30.0, ge=0, description="a running job asked to cancel that is still running this long after: a repeated DELETE kills its process"
    )

    # request limits and the inline pool
    max_upload_bytes: int = 20 * 1024 * 1024
    inline_threads: int = 4
    inline_backlog: int = 16  # inline calls that may wait for a thread; more are answered 429
    warm_models: list[str] = []  # loaded when the API starts (otherwise on first use)


@lru_cache
def get_settings() -> Settings:
    return Settings()
