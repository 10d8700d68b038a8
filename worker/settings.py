"""Worker settings (environment variables prefixed ``CONVLENS_``): broker, jobs, storage; read once per process.

The API's own settings (request limits, inline pool, keys, rate limits) extend these in
:mod:`api.settings`; the worker never reads them.
"""

from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.cost import Budget


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVLENS_", env_file=None)

    # broker + job records (one Redis serves both)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_connect_timeout: float = Field(1.0, gt=0, description="seconds; a dead broker answers 503 this fast")
    redis_socket_timeout: float = Field(2.0, gt=0, description="seconds per Redis command")

    # jobs
    job_ttl_seconds: int = Field(7 * 24 * 3600, ge=60, description="job records (and dedup) expire this long after their last change")
    job_soft_time_limit: int = Field(3600, ge=1, description="seconds; the job fails with code time_limit")
    job_time_limit: int = Field(3660, ge=1, description="seconds; hard limit, the worker child is killed")
    visibility_timeout: int = Field(4 * 3600, ge=1, description="seconds before an unacknowledged job is redelivered; longer than the longest job")
    redelivery_check_seconds: int = Field(60, ge=1, description="how often a worker looks for jobs abandoned by dead workers")
    max_deliveries: int = Field(3, ge=1, description="a job delivered more often (it keeps killing workers) fails as a poison pill")
    heartbeat_seconds: float = Field(5.0, gt=0, description="a worker running a job refreshes its heartbeat this often; three missed: its job is requeued")
    resend_queued_after_seconds: float = Field(3600.0, gt=0, description="a job queued this long since its message was sent is sent again (a broker restart may have lost it)")
    unsent_job_seconds: float = Field(30.0, gt=0, description="a job whose message is not known sent this long after submission fails (not_sent); its dedup key lives as long")
    upload_ttl_seconds: int = Field(30 * 24 * 3600, ge=60, description="uploaded images are deleted this long after their last upload, unless an unfinished job uses them")
    retention_sweep_seconds: float = Field(3600.0, gt=0, description="how often a worker deletes the stored objects of expired jobs and uploads")
    record_retry_seconds: float = Field(60.0, ge=0, description="how long a finishing job retries Redis and storage errors (with backoff) before giving up")
    progress_interval_seconds: float = Field(0.1, ge=0, description="minimum time between stored progress updates")
    preview_interval_seconds: float = Field(2.0, ge=0, description="minimum time between stored preview images")
    worker_max_memory_per_child_kb: int = Field(8_000_000, ge=100_000, description="recycle a worker child above this resident memory")
    plugins: str = Field("", description="comma-separated modules imported at API and worker start to register extra methods")
    log_format: Literal["json", "text"] = Field("json", description="json: one object per line, with request and job ids")

    # job caps: hard limits on one job's estimated cost (engine.cost), refused at submission with 422
    job_max_passes: int = Field(2_000_000, ge=1, description="forward/backward passes through the network")
    job_max_pixels: int = Field(256_000_000, ge=1, description="output pixels")
    job_max_bytes: int = Field(6 * 2**30, ge=1, description="working memory or output bytes; below worker_max_memory_per_child_kb")

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

    # decoding and running methods (the API's inline calls use these too)
    max_image_pixels: int = 40_000_000
    collection_max_images: int = Field(256, ge=1, description="images one collection may hold")
    collection_max_bytes: int = Field(200 * 1024 * 1024, ge=1, description="bytes of image files one collection may hold (zips: inflated)")
    collection_max_pixels: int = Field(400_000_000, ge=1, description="pixels of all the images of one collection together")
    builtin_samples: bool = Field(True, description="make the built-in 'samples' collection at start-up")
    device: str | None = None  # None: CUDA when present, else CPU

    # registered models
    max_model_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="largest model file accepted (413 above)")
    max_model_parameters: int = Field(150_000_000, ge=1, description="models with more parameters are refused")
    model_forward_seconds: float = Field(30.0, gt=0, description="the validating forward pass at the native size may take this long")
    max_model_nodes: int = Field(20_000, ge=1, description="ONNX graphs (a .pt2's translation included) with more nodes are refused before anything else reads them")
    max_model_tensor_bytes: int = Field(2**30, ge=1, description="largest intermediate tensor a model may make at any input size vetted (batch 2); larger is refused")
    model_vetting_seconds: float = Field(180.0, gt=0, description="wall-clock and CPU-time cap of the child process that vets a model file; killed past it (422 model_too_slow)")
    model_vetting_memory_bytes: int = Field(4 * 2**30, ge=2**26, description="address space the vetting child may use beyond its imports and the file (422 model_memory_limit past it)")
    model_vetting_concurrency: int = Field(2, ge=1, description="model files vetted at once (each in its own child process); more registrations wait")
    model_cache_bytes: int = Field(4 * 1024**3, ge=0, description="loaded models kept per process (parameters + buffers), least recently used out")
    malloc_keep_bytes: int = Field(2**30, ge=0, le=2**31 - 1, description="freed memory each process keeps for its next tensors instead of handing it back to the kernel (glibc; 0: glibc's defaults); see worker/allocator.py")

    # webhooks (the API checks a job's webhook; the webhooks worker delivers it)
    webhook_secret: str | None = Field(
        None, description="signs webhook deliveries (Standard Webhooks; 'whsec_<base64>' or plain text); unset: jobs may not name a webhook"
    )
    webhook_allow_private: bool = Field(
        False, description="let webhooks target loopback, private and link-local addresses (SSRF risk: tests and closed networks only)"
    )
    webhook_timeout_seconds: float = Field(
        5.0, gt=0, description="deadline of one delivery attempt, all of it (connect, send, status line and headers); past it the attempt failed and is retried"
    )
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

    def job_caps(self) -> Budget:
        return Budget("job", self.job_max_passes, self.job_max_pixels, self.job_max_bytes)

    def plugin_modules(self) -> list[str]:
        return [name.strip() for name in self.plugins.split(",") if name.strip()]


@lru_cache
def get_settings() -> Settings:
    return Settings()
