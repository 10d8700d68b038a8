"""Dataset methods over stored collections, inline, on real weights and the real sample photos."""

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.pictures import encode


def b64(image: Image.Image) -> dict:
    return {"base64": base64.b64encode(encode(image, "PNG")).decode()}


def samples(client) -> list[dict]:
    return client.get("/v1/collections/samples").json()["images"]


@pytest.fixture(scope="module")
def chelsea_bytes(client) -> bytes:
    chelsea = next(i for i in samples(client) if i["name"] == "chelsea")
    return client.get(chelsea["url"]).content


@pytest.mark.parametrize("metric", ["l2", "cosine"])
@pytest.mark.parametrize("change", ["flip", "crop"])
def test_changed_copy_finds_its_source_first(client, chelsea_bytes, metric, change):
    source = Image.open(io.BytesIO(chelsea_bytes)).convert("RGB")
    w, h = source.size
    query = ImageOps.mirror(source) if change == "flip" else source.crop((w // 8, h // 8, w - w // 8, h - h // 8))
    body = {"model": "efficientnet_lite0", "params": {"top_k": 3, "metric": metric},
            "inputs": {"images": {"collection": "samples"}, "query": b64(query)}}  # fmt: skip
    answer = client.post("/v1/nearest_neighbors?embed=all", json=body)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    stored = {i["id"]: i["name"] for i in samples(client)}
    (row,) = result["data"]["neighbors"]
    first = row["neighbors"][0]
    assert first["name"] == "chelsea" and stored[first["id"]] == "chelsea"  # named by the collection, in one answer
    assert all(stored[n["id"]] == n["name"] for n in row["neighbors"])
    found = [n["distance"] for n in row["neighbors"]]
    assert found == sorted(found) and found[0] < found[1]
    grid = next(a for a in result["artifacts"] if a["name"] == "neighbors")
    picture = Image.open(io.BytesIO(base64.b64decode(grid["data_base64"])))
    assert picture.width > 3 * picture.height  # one row: the query, then its three neighbours


def test_unknown_collection_is_404(client):
    body = {"inputs": {"images": {"collection": "0" * 24}}, "params": {"projection": "pca"}}
    answer = client.post("/v1/embedding?embed=all", json=body)
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_collection"


def artifact(result: dict, name: str) -> bytes:
    return base64.b64decode(next(a for a in result["artifacts"] if a["name"] == name)["data_base64"])


def test_embedding_reuses_features_until_the_collection_changes(client, chelsea, coffee, astronaut, sample_images):
    pictures = [chelsea, coffee, astronaut, *sample_images]
    files = [("files", (f"{i}.png", encode(p.resize((96, 72)), "PNG"))) for i, p in enumerate(pictures[:4])]
    made = client.post("/v1/collections", files=files).json()

    def embed(method: str) -> dict:
        body = {"params": {"projection": method, "steps": 250, "canvas": 200, "tile_size": 32},
                "inputs": {"images": {"collection": made["id"]}}}  # fmt: skip
        answer = client.post("/v1/embedding?embed=all", json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    first, second = embed("pca"), embed("tsne")
    assert first["data"]["features"]["cached"] is False
    assert second["data"]["features"]["cached"] is True  # the t-SNE query ran no forward pass
    assert second["data"]["features"]["key"] == first["data"]["features"]["key"]
    for result in (first, second):
        assert len(result["data"]["coordinates"]) == 4 and all(len(xy) == 2 for xy in result["data"]["coordinates"])
        picture = artifact(result, "map")
        assert picture[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(picture)).size == (200, 200)
    pca = np.load(io.BytesIO(artifact(first, "features")))
    tsne = np.load(io.BytesIO(artifact(second, "features")))
    np.testing.assert_array_equal(pca, tsne)

    extra = [("files", ("4.png", encode(pictures[4].resize((96, 72)), "PNG")))]
    assert client.post(f"/v1/collections/{made['id']}/images", files=extra).status_code == 200
    grown = embed("pca")
    assert grown["data"]["features"]["cached"] is False and grown["data"]["features"]["key"] != first["data"]["features"]["key"]
    assert len(grown["data"]["coordinates"]) == 5


def test_multipart_pictures_are_named_by_their_file_names(client, chelsea, coffee, astronaut):
    files = [("images", (f"{name}.png", encode(picture.resize((64, 48)), "PNG"), "image/png"))
             for name, picture in (("cat", chelsea), ("cup", coffee), ("astronaut", astronaut), ("cat-mirrored", ImageOps.mirror(chelsea)))]
    answer = client.post("/v1/nearest_neighbors", files=files, data={"params": '{"top_k": 1, "size": 64}'})
    assert answer.status_code == 200, answer.text
    rows = {row["query"]["name"]: row["neighbors"][0] for row in answer.json()["data"]["neighbors"]}
    assert rows["cat.png"]["name"] == "cat-mirrored.png" and rows["cat-mirrored.png"]["name"] == "cat.png"
    assert all(row["query"]["id"] is None for row in answer.json()["data"]["neighbors"])  # sent, never stored
