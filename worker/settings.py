"""Service settings (environment variables prefixed ``CONVLENS_``), read once per process."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVLENS_", env_file=None)

    # broker + job records (one Redis serves both)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_connect_timeout: float = Field(1.0, gt=0, description="seconds; a dead broker answers 503 this fast")
    redis_socket_timeout: float = Field(2.0, gt=0, description="seconds per Redis command")
    retry_after_seconds: int = Field(2, ge=1, description="Retry-After sent with 503 and 202 answers")

    # jobs
    job_ttl_seconds: int = Field(7 * 24 * 3600, ge=60, description="job records (and dedup) expire this long after their last change")
    job_soft_time_limit: int = Field(3600, ge=1, description="seconds; the job fails with code time_limit")
    job_time_limit: int = Field(3660, ge=1, description="seconds; hard limit, the worker child is killed")
    visibility_timeout: int = Field(4 * 3600, ge=1, description="seconds before an unacknowledged job is redelivered; longer than the longest job")
    redelivery_check_seconds: int = Field(60, ge=1, description="how often a worker looks for jobs abandoned by dead workers")
    max_deliveries: int = Field(3, ge=1, description="a job delivered more often (it keeps killing workers) fails as a poison pill")
    cancel_grace_seconds: float = Field(
        30.0, ge=0, description="a running job asked to cancel that is still running this long after: a repeated DELETE kills its process"
    )
    progress_interval_seconds: float = Field(0.1, ge=0, description="minimum time between stored progress updates")
    preview_interval_seconds: float = Field(2.0, ge=0, description="minimum time between stored preview images")
    worker_max_memory_per_child_kb: int = Field(8_000_000, ge=100_000, description="recycle a worker child above this resident memory")
    sse_heartbeat_seconds: float = Field(15.0, gt=0, description="comment lines keeping idle event streams open")
    plugins: str = Field("", description="comma-separated modules imported at API and worker start to register extra methods")

    # object storage
    storage: Literal["filesystem", "s3"] = "filesystem"
    storage_dir: str = "var/storage"
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None  # what clients reach; presigned URLs sign this host
    s3_bucket: str = "convlens"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_create_bucket: bool = False
    s3_presign_seconds: int = Field(3600, ge=1, le=7 * 24 * 3600)

    # request limits
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    inline_threads: int = 4
    inline_backlog: int = 16  # inline calls that may wait for a thread; more are answered 429
    warm_models: list[str] = []  # loaded when the API starts (otherwise on first use)
    device: str | None = None  # None: CUDA when present, else CPU

    # clients: inline artifacts, Prefer: wait, webhooks
    inline_embed: str = Field(
        "none", description="artifacts embedded (base64) in inline JSON answers when the request has no ?embed=: "
        "'none', 'all', 'main' or a comma-separated list of names; the others are linked"
    )
    inline_link_seconds: float = Field(300.0, gt=0, description="how long linked inline artifacts stay downloadable")
    inline_link_max_results: int = Field(256, ge=1, description="inline results kept for their links (oldest dropped first)")
    max_wait_seconds: float = Field(60.0, ge=0, description="the longest `Prefer: wait=N` honoured on POST /v1/jobs")
    webhook_secret: str | None = Field(
        None, description="signs webhook deliveries (Standard Webhooks; 'whsec_<base64>' or plain text); unset: jobs may not name a webhook"
    )
    webhook_allow_private: bool = Field(
        False, description="let webhooks target loopback, private and link-local addresses (SSRF risk: tests and closed networks only)"
    )
    webhook_timeout_seconds: float = Field(5.0, gt=0, description="per delivery attempt")
    webhook_max_attempts: int = Field(6, ge=1, description="deliveries tried this often before giving up")
    webhook_retry_base_seconds: float = Field(2.0, ge=0, description="backoff: attempt n waits base * 2**(n-1) seconds")
    webhook_progress_interval_seconds: float = Field(1.0, ge=0, description="minimum time between progress deliveries")

    @model_validator(mode="after")
    def _limits_are_ordered(self) -> "Settings":
        if self.job_soft_time_limit >= self.job_time_limit:
            raise ValueError("job_soft_time_limit must be below job_time_limit")
        if self.visibility_timeout <= self.job_time_limit:
            raise ValueError("visibility_timeout must exceed job_time_limit, or long jobs run twice")
        return self

    def plugin_modules(self) -> list[str]:
        return [name.strip() for name in self.plugins.split(",") if name.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
