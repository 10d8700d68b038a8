"""The configuration table of docs/configuration.md, made from the API Settings class (the worker's and its own): ``python -m api.export_settings``.

Every setting is an environment variable ``CONVLENS_<NAME>``; the table gives
its default and meaning (the field's description, else the note below).
"""

import json
import sys

from pydantic_settings import BaseSettings

from api.settings import Settings

NOTES = {  # settings declared without a description
    "redis_url": "Redis for the broker, job records, progress pub/sub and dedup keys",
    "storage": "where inputs and artifacts live: filesystem or s3",
    "storage_dir": "root of the filesystem store",
    "s3_endpoint_url": "S3 API endpoint the service uses (MinIO: http://minio:9000); unset: AWS",
    "s3_public_endpoint_url": "S3 endpoint clients reach; presigned URLs are signed for this host",
    "s3_bucket": "bucket of inputs and artifacts",
    "s3_region": "bucket region",
    "s3_access_key_id": "S3 credentials (unset: the default boto3 chain)",
    "s3_secret_access_key": "S3 credentials (unset: the default boto3 chain)",
    "s3_create_bucket": "create the bucket at start when missing",
    "s3_presign_seconds": "lifetime of presigned artifact URLs",
    "max_upload_bytes": "larger request bodies are refused with 413 before they are read",
    "max_image_pixels": "larger pictures are refused with 413 before they are decoded",
    "inline_threads": "inline calls working at once (a call waiting for its batch lets another work)",
    "inline_backlog": "inline calls that may wait for a thread; more are answered 429",
    "warm_models": "models loaded when the API starts (JSON list), others on first use",
    "device": "torch device; unset: CUDA when present, else CPU",
}


def settings_table(settings_class: type[BaseSettings] = Settings) -> str:
    prefix = settings_class.model_config.get("env_prefix", "")
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in settings_class.model_fields.items():
        default = field.get_default(call_default_factory=True)
        shown = "unset" if default is None else json.dumps(default) if isinstance(default, list) else str(default)
        meaning = (field.description or NOTES.get(name, "")).replace("|", "\\|")
        rows.append(f"| `{prefix.upper()}{name.upper()}` | `{shown}` | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(settings_table())
