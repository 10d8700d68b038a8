"""Inline JSON answers embed the artifacts the caller names and link the others."""

import base64
import io

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from tests.api.conftest import make_settings
from tests.pictures import encode


def saliency(client, picture, embed=None):
    query = f"?embed={embed}" if embed is not None else ""
    response = client.post(f"/v1/saliency{query}", files={"image": ("cat.png", picture, "image/png")})
    assert response.status_code == 200, response.text
    return {artifact["name"]: artifact for artifact in response.json()["artifacts"]}, response.json()


def test_default_links_everything_and_links_serve_the_same_bytes_as_embedding(client, chelsea):
    picture = encode(chelsea.resize((160, 120)))
    linked, body = saliency(client, picture)
    assert {"heatmap", "overlay"} <= set(linked)
    assert all("data_base64" not in artifact and artifact["url"].startswith("/v1/results/") for artifact in linked.values())
    embedded, _ = saliency(client, picture, "all")
    for name, artifact in linked.items():
        download = client.get(artifact["url"])
        assert download.status_code == 200 and download.headers["content-type"] == artifact["media_type"]
        assert download.content == base64.b64decode(embedded[name]["data_base64"])
        if artifact["kind"] == "image":
            assert Image.open(io.BytesIO(download.content)).size == (artifact["width"], artifact["height"])
        else:
            array = np.load(io.BytesIO(download.content))
            assert list(array.shape) == artifact["shape"] and array.dtype.str == artifact["dtype"]


def test_embed_names_and_main(client, chelsea):
    picture = encode(chelsea.resize((160, 120)))
    chosen, body = saliency(client, picture, "heatmap,overlay")
    assert {name for name, artifact in chosen.items() if "data_base64" in artifact} == {"heatmap", "overlay"}
    assert all("url" in artifact for name, artifact in chosen.items() if name not in {"heatmap", "overlay"})
    main, body = saliency(client, picture, "main")
    assert [name for name, artifact in main.items() if "data_base64" in artifact] == [body["main"]]
    nothing, _ = saliency(client, picture, "none")
    assert not any("data_base64" in artifact for artifact in nothing.values())


def test_unknown_and_expired_links_are_404(chelsea):
    with TestClient(create_app(make_settings(inline_link_max_results=1))) as client:
        first, _ = saliency(client, encode(chelsea.resize((96, 64))))
        second, _ = saliency(client, encode(chelsea.resize((96, 64))))
        assert client.get(second["overlay"]["url"]).status_code == 200
        gone = client.get(first["overlay"]["url"])  # pushed out by the second result
        assert (gone.status_code, gone.json()["code"]) == (404, "unknown_result")
        missing = client.get(second["overlay"]["url"].rsplit("/", 1)[0] + "/nope")
        assert (missing.status_code, missing.json()["code"]) == (404, "unknown_artifact")
