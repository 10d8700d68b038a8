"""Both storage backends: round trip, missing keys, traversal-safe keys, presigned URLs (real S3 API: moto)."""

import os
import uuid

import httpx
import pytest

from tests.e2e.servers import s3_env
from worker.settings import Settings
from worker.storage import FilesystemStorage, InvalidKey, ObjectNotFound, S3Storage, StorageUnavailable, make_storage


def s3_settings(server, bucket: str, **extra) -> Settings:
    env = s3_env(server, bucket)
    return Settings(**{**{name.removeprefix("CONVLENS_").lower(): value for name, value in env.items()}, **extra})


@pytest.fixture(params=["filesystem", "s3"])
def storage(request, tmp_path, s3_server):
    if request.param == "s3":
        return make_storage(s3_settings(s3_server, f"b-{uuid.uuid4().hex[:12]}"))
    return make_storage(Settings(storage="filesystem", storage_dir=str(tmp_path / "store")))


def test_round_trip_overwrite_and_delete(storage):
    storage.put("jobs/abc/out.png", b"\x89PNG first", "image/png")
    storage.put("jobs/abc/out.png", b"\x89PNG second", "image/png")
    assert storage.get("jobs/abc/out.png") == b"\x89PNG second"
    assert storage.exists("jobs/abc/out.png")
    storage.delete("jobs/abc/out.png")
    assert not storage.exists("jobs/abc/out.png")
    storage.check()


def test_missing_key_is_a_clean_error(storage):
    with pytest.raises(ObjectNotFound):
        storage.get("images/never-stored")
    assert not storage.exists("images/never-stored")


@pytest.mark.parametrize("key", ["../etc/passwd", "a/../../b", "/abs/path", "a//b", "", ".hidden", "a\\..\\b", "a/./b", "a/b/", "é"])
def test_unsafe_keys_are_refused_before_any_io(storage, key):
    for operation in (lambda: storage.get(key), lambda: storage.put(key, b"x", "text/plain"), lambda: storage.exists(key)):
        with pytest.raises(InvalidKey):
            operation()


def test_filesystem_writes_are_atomic_and_stay_inside_the_root(tmp_path):
    storage = FilesystemStorage(tmp_path / "store")
    storage.put("a/b.bin", b"x" * 1000, "application/octet-stream")
    assert sorted(p.name for p in (tmp_path / "store" / "a").iterdir()) == ["b.bin"]  # no temp file left
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", tmp_path / "store" / "link")
    with pytest.raises(InvalidKey):
        storage.put("link/escape.bin", b"x", "application/octet-stream")
    assert list((tmp_path / "outside").iterdir()) == []


def test_filesystem_has_no_presigned_urls(tmp_path):
    assert FilesystemStorage(tmp_path).presigned_url("a/b") is None


def test_presigned_url_is_signed_for_the_public_endpoint_and_works(s3_server):
    storage = make_storage(s3_settings(s3_server, f"b-{uuid.uuid4().hex[:12]}"))
    storage.put("jobs/j1/final.png", b"\x89PNG bytes", "image/png")
    url = storage.presigned_url("jobs/j1/final.png")
    assert url.startswith(f"http://localhost:{s3_server.port}/")  # the public host, path-style
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"\x89PNG bytes"
    assert response.headers["content-type"] == "image/png"


def test_s3_without_its_bucket_is_unavailable(s3_server):
    storage = S3Storage(s3_settings(s3_server, f"b-{uuid.uuid4().hex[:12]}", s3_create_bucket=False))
    with pytest.raises(StorageUnavailable):
        storage.check()


def test_s3_unreachable_is_unavailable_not_a_crash():
    settings = Settings(storage="s3", s3_endpoint_url="http://127.0.0.1:9", s3_access_key_id="x", s3_secret_access_key="y")
    storage = S3Storage(settings)
    with pytest.raises(StorageUnavailable):
        storage.get("images/abc")
