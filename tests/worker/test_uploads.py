"""Uploads: stored once under a content-hash id, read back, refused when they are no safe picture."""

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageRejected
from tests.pictures import encode
from worker.storage import FilesystemStorage
from worker.uploads import UnknownImage, image_bytes, load_image, read_image, require_images, store_image


def test_store_dedups_by_content_and_reads_back(tmp_path, chelsea, coffee):
    storage = FilesystemStorage(tmp_path)
    data = encode(chelsea)
    first, created = store_image(storage, data, 1_000_000, "alice")
    again, created_again = store_image(storage, data, 1_000_000, "alice")
    other, _ = store_image(storage, encode(coffee, "JPEG"), 1_000_000, "alice")
    assert created and not created_again and first == again
    assert other.id != first.id and other.media_type == "image/jpeg"
    assert (first.width, first.height, first.format, first.bytes) == (chelsea.width, chelsea.height, "PNG", len(data))
    assert read_image(storage, first.id, "alice") == (data, "image/png")
    assert image_bytes(storage, first.id, "alice") == data
    assert np.array_equal(np.asarray(load_image(storage, first.id, 1_000_000, "alice")), np.asarray(chelsea))
    require_images(storage, [first.id, other.id], "alice")
    for bad in ("f" * 32, "../../etc/passwd", "ABC"):
        with pytest.raises(UnknownImage):
            require_images(storage, [first.id, bad], "alice")
        with pytest.raises(UnknownImage):
            image_bytes(storage, bad, "alice")


def test_another_tenants_image_is_not_found(tmp_path, chelsea):
    storage = FilesystemStorage(tmp_path)
    stored, _ = store_image(storage, encode(chelsea), 1_000_000, "alice")
    with pytest.raises(UnknownImage):
        image_bytes(storage, stored.id, "bob")
    with pytest.raises(UnknownImage):
        require_images(storage, [stored.id], "bob")
    again, created = store_image(storage, encode(chelsea), 1_000_000, "bob")  # bob's own copy, same id
    assert created and again.id == stored.id


@pytest.mark.parametrize("data, code", [
    (b"plain text, not an image", "not_an_image"),
    (encode(Image.new("RGB", (8, 8)), "PPM"), "unsupported_image_format"),  # decodable, but not whitelisted
    (encode(Image.new("RGB", (4000, 3000))), "image_too_large"),
])
def test_rejected_uploads_are_not_stored(tmp_path, data, code):
    storage = FilesystemStorage(tmp_path)
    with pytest.raises(ImageRejected) as caught:
        store_image(storage, data, 1_000_000, "alice")
    assert caught.value.code == code
    assert not (tmp_path / "images").exists()
