"""Collections over HTTP: create from files or a zip, list, read, add, delete, and every bad upload refused whole."""

import hashlib
import io
import struct
import zipfile

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.deps import current_tenant
from tests.api.conftest import make_settings
from tests.pictures import encode

LIMITS = {"collection_max_images": 4, "collection_max_bytes": 2_000_000}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(make_settings(**LIMITS))) as client:
        yield client


@pytest.fixture(scope="module")
def photos(chelsea, coffee, astronaut) -> list[bytes]:
    return [encode(image.resize((64, 48)), "JPEG") for image in (chelsea, coffee, astronaut)]


def image_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def make_zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def post_files(client, files: list[tuple[str, bytes]], name="test", path="/v1/collections"):
    return client.post(path, data={"name": name}, files=[("files", (n, d)) for n, d in files])


def ids(client) -> set[str]:
    return {c["id"] for c in client.get("/v1/collections").json()["collections"]}


def test_create_read_add_delete(client, photos):
    made = post_files(client, [("cat.jpg", photos[0]), ("coffee.jpg", photos[1])])
    assert made.status_code == 201, made.text
    body = made.json()
    assert made.headers["location"] == f"/v1/collections/{body['id']}"
    assert [i["name"] for i in body["images"]] == ["cat.jpg", "coffee.jpg"]
    assert [i["id"] for i in body["images"]] == [image_id(photos[0]), image_id(photos[1])]
    assert body["id"] in ids(client)
    thumb = client.get(body["images"][0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 128

    grown = post_files(client, [("astronaut.jpg", photos[2])], path=f"/v1/collections/{body['id']}/images")
    assert grown.status_code == 200 and grown.json()["count"] == 3
    assert grown.json()["content_hash"] != body["content_hash"]

    assert client.delete(f"/v1/collections/{body['id']}").status_code == 204
    assert client.get(f"/v1/collections/{body['id']}").status_code == 404
    assert body["id"] not in ids(client)


def test_zip_upload_names_entries(client, photos):
    data = make_zip({"pets/cat.jpg": photos[0], "drinks/coffee.jpg": photos[1], "empty/": b""})
    made = client.post("/v1/collections?name=zipped", content=data, headers={"content-type": "application/zip"})
    assert made.status_code == 201, made.text
    assert [i["name"] for i in made.json()["images"]] == ["upload.zip/pets/cat.jpg", "upload.zip/drinks/coffee.jpg"]


def test_samples_are_real_named_photos(client):
    samples = client.get("/v1/collections/samples").json()
    names = [i["name"] for i in samples["images"]]
    assert {"chelsea", "coffee", "astronaut", "rocket", "china", "flower"} <= set(names)
    assert samples["builtin"] and all(i["width"] >= 300 for i in samples["images"])
    assert client.delete("/v1/collections/samples").status_code == 409


def test_samples_are_made_even_where_the_picture_limit_is_smaller(tmp_path):
    """The samples are known files: a service configured for small pictures still starts with them."""
    settings = make_settings(storage_dir=str(tmp_path / "storage"), max_image_pixels=64 * 64)
    with TestClient(create_app(settings)) as small:
        assert len(small.get("/v1/collections/samples").json()["images"]) >= 6
        refused = post_files(small, [("big.png", encode(Image.new("RGB", (65, 64))))])
        assert refused.status_code == 413 and refused.json()["code"] == "image_too_large"


def test_foreign_and_malformed_ids_are_404(client, photos):
    for bad in ("0" * 24, "samples2", "a.b"):
        answer = client.get(f"/v1/collections/{bad}")
        assert answer.status_code == 404 and answer.json()["code"] == "unknown_collection"
    mine = post_files(client, [("cat.jpg", photos[0])]).json()["id"]
    client.app.dependency_overrides[current_tenant] = lambda: "someone-else"
    try:
        assert client.get(f"/v1/collections/{mine}").status_code == 404
        assert client.delete(f"/v1/collections/{mine}").status_code == 404
        assert mine not in ids(client) and "samples" in ids(client)
    finally:
        client.app.dependency_overrides.clear()
    assert client.get(f"/v1/collections/{mine}").status_code == 200


def lying_zip(photo: bytes) -> bytes:
    """A zip whose central directory says its one entry inflates to 10 bytes while it really inflates to 1 MB."""
    data = bytearray(make_zip({"a.jpg": photo + b"\0" * 1_000_000}))
    at = data.rfind(b"PK\x01\x02")
    data[at + 24 : at + 28] = struct.pack("<I", 10)  # uncompressed size in the central directory
    return bytes(data)


def damaged_zip(photo: bytes) -> bytes:
    """A zip whose second entry's deflate stream is damaged (bytes flipped after its local header): zlib, not zipfile, fails."""
    data = bytearray(make_zip({"ok.jpg": photo, "b.jpg": photo[::-1]}))
    start = data.index(b"PK\x03\x04", 4) + 30 + len("b.jpg")
    for at in range(start + 2, start + 20):
        data[at] ^= 0xA5
    return bytes(data)


BAD_ZIPS = {
    "traversal": (lambda p: make_zip({"ok.jpg": p[0], "../evil.jpg": p[1]}), 400, "unsafe_zip_entry"),
    "absolute": (lambda p: make_zip({"ok.jpg": p[0], "/etc/evil.jpg": p[1]}), 400, "unsafe_zip_entry"),
    "long_file_name": (lambda p: make_zip({"ok.jpg": p[0], "pets/" + "c" * 252 + ".jpg": p[1]}), 400, "unsafe_zip_entry"),
    "bomb": (lambda p: make_zip({"ok.jpg": p[0], "zeros.bin": b"\0" * 20_000_000}), 413, "zip_too_large"),
    "lying_header": (lambda p: lying_zip(p[0]), 400, "bad_zip"),
    "damaged_stream": (lambda p: damaged_zip(p[0]), 400, "bad_zip"),
    "over_count": (lambda p: make_zip({f"{i}.jpg": encode(Image.new("RGB", (8, 8), (i, 0, 0)), "PNG") for i in range(5)}), 413, "too_many_images"),
    "not_an_image": (lambda p: make_zip({"ok.jpg": p[0], "notes/readme.txt": b"hello, not a picture"}), 400, "not_an_image"),
}


@pytest.mark.parametrize("case", BAD_ZIPS)
def test_bad_zip_is_refused_whole(client, photos, case):
    build, status, code = BAD_ZIPS[case]
    before = ids(client)
    fresh = [encode(Image.open(io.BytesIO(p)).rotate(90, expand=True), "JPEG") for p in photos]  # bytes no other test stored
    answer = post_files(client, [("upload.zip", build(fresh))])
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["code"] == code
    if case == "not_an_image":
        assert "notes/readme.txt" in problem["detail"]
    assert ids(client) == before
    assert client.get(f"/v1/images/{image_id(fresh[0])}").status_code == 404  # the good entry was not stored either


def test_a_zip_entry_name_past_255_characters_is_refused_and_shown_short(client, photos):
    """A zip's name field holds up to 64 KB; a file name (without its path) over 255 characters is refused before
    anything is stored, and the answer names the member by its first characters only."""
    huge = "pets/" + "c" * 65_000 + ".jpg"
    before = ids(client)
    answer = post_files(client, [("upload.zip", make_zip({"ok.jpg": photos[0], huge: photos[1]}))])
    assert_problem_code(answer, 400, "unsafe_zip_entry")
    problem = answer.json()
    assert "pets/ccc" in problem["detail"] and "65004 characters" in problem["detail"] and "255" in problem["detail"]
    assert len(answer.content) < 2_000 and problem["entry"].startswith("pets/ccc") and len(problem["entry"]) < 100
    assert ids(client) == before


def test_a_zip_entry_file_name_of_255_characters_is_kept(client, photos):
    name = "long/" + "d" * 251 + ".jpg"
    data = make_zip({name: encode(Image.open(io.BytesIO(photos[2])).rotate(180), "JPEG")})
    made = client.post("/v1/collections?name=long", content=data, headers={"content-type": "application/zip"})
    assert made.status_code == 201, made.text
    assert [i["name"] for i in made.json()["images"]] == [f"upload.zip/{name}"]


def assert_problem_code(answer, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == code


def test_over_count_across_adds_changes_nothing(client, photos):
    made = post_files(client, [("a.jpg", photos[0]), ("b.jpg", photos[1]), ("c.jpg", photos[2])]).json()
    extra = [(f"{i}.png", encode(Image.new("RGB", (8, 8), (0, i, 0)), "PNG")) for i in range(2)]
    answer = post_files(client, extra, path=f"/v1/collections/{made['id']}/images")
    assert answer.status_code == 413 and answer.json()["code"] == "too_many_images"
    assert client.get(f"/v1/collections/{made['id']}").json()["content_hash"] == made["content_hash"]
    assert client.get(f"/v1/images/{image_id(extra[0][1])}").status_code == 404


def test_too_many_files_in_one_form(client):
    files = [(f"{i}.png", encode(Image.new("RGB", (8, 8), (0, 0, i)), "PNG")) for i in range(6)]
    answer = post_files(client, files)
    assert answer.status_code == 413 and answer.json()["code"] == "too_many_images"


def test_wrong_media_type_and_empty_form(client):
    assert client.post("/v1/collections", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
    answer = client.post("/v1/collections", data={"name": "x"}, files=[("other", ("a", b"b"))])
    assert answer.status_code == 400 and answer.json()["code"] == "missing_file"


def test_concurrent_adds_keep_every_picture(client, photos, monkeypatch):
    import threading

    import worker.collections

    made = post_files(client, [("cat.jpg", photos[0])])
    assert made.status_code == 201, made.text
    collection_id = made.json()["id"]
    both_read = threading.Barrier(2)
    decode = worker.collections.decode_image

    def decode_once_both_have_read(*args):  # holds each add until the other has read the record too (unless it cannot)
        try:
            both_read.wait(timeout=1)
        except threading.BrokenBarrierError:
            pass
        return decode(*args)

    monkeypatch.setattr(worker.collections, "decode_image", decode_once_both_have_read)
    answers = []
    adds = [threading.Thread(target=lambda name, data: answers.append(post_files(client, [(name, data)], path=f"/v1/collections/{collection_id}/images")),
                             args=(name, data)) for name, data in (("coffee.jpg", photos[1]), ("astronaut.jpg", photos[2]))]
    for add in adds:
        add.start()
    for add in adds:
        add.join()

    assert [answer.status_code for answer in answers] == [200, 200], [answer.text for answer in answers]
    kept = {image["name"] for image in client.get(f"/v1/collections/{collection_id}").json()["images"]}
    assert kept == {"cat.jpg", "coffee.jpg", "astronaut.jpg"}
