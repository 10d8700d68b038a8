"""API settings: the worker's (broker, jobs, storage) plus what only the API reads.

Environment variables are prefixed ``CONVLENS_`` like the worker's; one
``Settings`` object is read once per process.
"""

import ipaddress
from functools import lru_cache

from pydantic import Field, SecretStr, field_validator, model_validator

from engine.cost import Budget
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
    inline_per_key: int | None = Field(
        None, ge=0, description="inline calls one key may have running or waiting at once; more are answered 429 "
        "inline_per_key_limit (a key may carry its own; 0: no cap); unset: half the inline threads, at least 1, "
        "so that one key never holds every thread"
    )
    warm_models: list[str] = []  # loaded when the API starts (otherwise on first use)
    kserve_models: dict[str, str] = Field(
        {}, description="KServe model names (an InferenceService's) -> the model each stands for in POST /v1/models/{name}:predict "
        "and :explain (JSON object); a name not listed is a model name of GET /v1/models"
    )

    # inline budget: inline calls estimated over it are refused (422 over_inline_budget: submit a job)
    inline_max_passes: int = Field(1024, ge=1, description="forward/backward passes through the network")
    inline_max_pixels: int = Field(16_000_000, ge=1, description="output pixels")
    inline_max_bytes: int = Field(4 * 2**30, ge=1, description="working memory or output bytes")
    inline_time_limit_seconds: float = Field(60.0, gt=0, description="an inline call still running this long stops at its next step (503)")
    inline_max_batch: int = Field(8, ge=1, le=256, description="calls or pictures that share a pass through the network")
    inline_batch_delay_ms: float = Field(5.0, ge=0, le=1000, description="how long an inline call that can share a pass waits for "
                                         "others of its method and model to arrive (0: never batch calls of separate requests)")
    inline_batch_runners: int = Field(2, ge=1, le=64, description="threads that run batches of inline calls, each with its share of "
                                      "torch's intra-op threads (on a GPU, 1 or 2)")
    inline_max_pictures: int = Field(64, ge=1, le=1024, description="pictures one inline request of a one-picture method may send")

    # inline artifacts and Prefer: wait
    inline_embed: str = Field(
        "none", description="artifacts embedded (base64) in inline JSON answers when the request has no ?embed=: "
        "'none', 'all', 'main' or a comma-separated list of names; the others are linked"
    )
    inline_link_seconds: float = Field(300.0, gt=0, description="how long linked inline artifacts stay downloadable")
    inline_link_max_results: int = Field(256, ge=1, description="inline results kept for their links (oldest dropped first)")
    max_wait_seconds: float = Field(60.0, ge=0, description="the longest `Prefer: wait=N` honoured on POST /v1/jobs")

    # API keys (api.keys) and their default limits (a key may carry its own; 0: unlimited)
    open_access: bool = Field(
        False, description="no keys: every request acts for the one tenant 'public' with every scope; loopback only"
    )
    admin_key: SecretStr | None = Field(None, description="bootstrap admin key (tenant 'admin') that makes the other keys")
    rate_per_minute: int = Field(600, ge=0, description="requests per minute per key")
    max_active_jobs: int = Field(16, ge=0, description="queued + running jobs per tenant")
    max_stored_bytes: int = Field(5 * 1024**3, ge=0, description="bytes kept stored per tenant: uploaded images, collections' images (inflated), style models")
    max_event_streams: int = Field(
        32, ge=0, description="event streams (GET /v1/jobs/{id}/events) and `Prefer: wait` submissions one tenant may hold "
        "open at once in each API process; one more stream is answered 429 too_many_streams, one more wait is skipped "
        "(the job answered at once as it stands, 202 while unfinished) (0: no cap)"
    )
    quota_retry_after_seconds: int = Field(60, ge=1, description="Retry-After of a 429 for a full job, storage or event-stream quota")

    def inline_budget(self) -> Budget:
        return Budget("inline", self.inline_max_passes, self.inline_max_pixels, self.inline_max_bytes)

    @model_validator(mode="after")
    def _inline_share(self) -> "Settings":
        if self.inline_per_key is None:
            self.inline_per_key = max(1, self.inline_threads // 2)
        return self

    @field_validator("admin_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == "" else value

    def refuses_to_bind(self, host: str) -> str | None:
        """Why serving on ``host`` with these settings would be unsafe, or None.

        Open access (no keys) is for one machine: anyone who reaches the port
        could read, submit and delete everything. Without an admin key no key
        can ever be made, so the service would answer nothing but 401.
        """
        if self.open_access and not is_loopback(host):
            return (f"refusing to serve open access (CONVLENS_OPEN_ACCESS) on {host}: any client reaching it could read "
                    "and cancel every job; bind 127.0.0.1, or set CONVLENS_ADMIN_KEY and turn open access off")
        if not self.open_access and self.admin_key is None:
            return ("no API keys configured: set CONVLENS_ADMIN_KEY (a bootstrap admin key that makes the other keys "
                    "with POST /v1/keys), or CONVLENS_OPEN_ACCESS=true on a loopback address for local use")
        return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@lru_cache
def get_settings() -> Settings:
    return Settings()
