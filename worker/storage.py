"""Object storage for uploaded images, job artifacts and previews.

Two backends behind one small interface: the local filesystem (the default;
atomic writes) and any S3 API server through boto3 (AWS, MinIO). Keys are
slash-separated names of safe characters; anything that could climb out of
the store (``..``, absolute paths, backslashes) is refused before any I/O.
"""

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Protocol

from worker.settings import Settings

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_KEY = re.compile(rf"{_SEGMENT}(/{_SEGMENT}){{0,7}}")


class StorageError(Exception):
    """Base class of storage failures."""


class InvalidKey(StorageError):
    pass


class ObjectNotFound(StorageError):
    pass


class StorageUnavailable(StorageError):
    """The backend cannot be reached or refuses service."""


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > 1024 or not _KEY.fullmatch(key) or ".." in key.split("/"):
        raise InvalidKey(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    def put(self, key: str, data: bytes, media_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        """Every key under ``prefix`` with its last-modified time (epoch seconds)."""
        ...

    def presigned_url(self, key: str) -> str | None:
        """A URL clients can GET without credentials, or None when the backend has none."""

    def check(self) -> None:
        """Raise StorageUnavailable unless the backend accepts reads and writes."""


class FilesystemStorage:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # a symlink inside the store pointing out of it
            raise InvalidKey(f"invalid storage key {key!r}")
        return path

    def put(self, key: str, data: bytes, media_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            os.replace(tmp, path)
        except BaseException:  # a soft time limit may land just after the replace: tmp is gone then
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith((".tmp-", ".ready-")):
                try:
                    yield path.relative_to(self.root).as_posix(), path.stat().st_mtime
                except FileNotFoundError:
                    continue  # deleted meanwhile

    def presigned_url(self, key: str) -> str | None:
        return None

    def check(self) -> None:
        try:
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".ready-")
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            raise StorageUnavailable(f"storage directory {self.root} is not writable: {exc}") from exc


class S3Storage:
    """S3 API through boto3; path-style addressing so MinIO works behind any host name.

    Presigned URLs are signed by a second client whose endpoint is the public
    one: the Host header is part of the signature, so a URL signed for the
    internal endpoint (``minio:9000``) would be refused when fetched from outside.
    """

    def __init__(self, settings: Settings):
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            connect_timeout=settings.redis_connect_timeout * 2,
            read_timeout=30,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        credentials = dict(
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            config=config,
        )
        self.bucket = settings.s3_bucket
        self.client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url, **credentials)
        public = settings.s3_public_endpoint_url or settings.s3_endpoint_url
        self.signer = boto3.client("s3", endpoint_url=public, **credentials)
        self.presign_seconds = settings.s3_presign_seconds
        if settings.s3_create_bucket:
            self._create_bucket()

    def _create_bucket(self) -> None:
        try:
            with _translated("bucket"):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound:
            with _translated("bucket"):
                self.client.create_bucket(Bucket=self.bucket)

    def put(self, key: str, data: bytes, media_type: str) -> None:
        with _translated(key):
            self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data, ContentType=media_type)

    def get(self, key: str) -> bytes:
        with _translated(key):
            return self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            with _translated(key):
                self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        with _translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))

    def list(self, prefix: str) -> Iterator[tuple[str, float]]:
        with _translated(prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"], item["LastModified"].timestamp()

    def presigned_url(self, key: str) -> str | None:
        return self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=self.presign_seconds
        )

    def check(self) -> None:
        try:
            with _translated(self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectNotFound:
            raise StorageUnavailable(f"bucket {self.bucket!r} does not exist") from None


@contextmanager
def _translated(key: str):
    """Turn botocore's errors into ObjectNotFound / StorageUnavailable."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchKey", "NotFound"}:
            raise ObjectNotFound(f"no object {key!r}") from None
        raise StorageUnavailable(f"object storage refused the request: {code or exc}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"object storage unreachable: {exc}") from exc


def make_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        return S3Storage(settings)
    return FilesystemStorage(settings.storage_dir)
