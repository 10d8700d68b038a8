"""Service settings (environment variables prefixed ``CONVLENS_``), read once per process."""

from functools import lru_cache
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVLENS_", env_file=None)

    # broker + job records
    redis_url: str = "redis://127.0.0.1:6379/0"

    # object storage
    storage: Literal["filesystem", "s3"] = "filesystem"
    storage_dir: str = "var/storage"
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = "convlens"
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None

    # request limits
    max_upload_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    inline_threads: int = 4
    inline_backlog: int = 16  # inline calls that may wait for a thread; more are answered 429
    warm_models: list[str] = []  # loaded when the API starts (otherwise on first use)
    device: str | None = None  # None: CUDA when present, else CPU


@lru_cache
def get_settings() -> Settings:
    return Settings()
