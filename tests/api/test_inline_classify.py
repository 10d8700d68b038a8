"""classify over HTTP on real photos with the real EfficientNet, in both request forms."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.pictures import encode

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def multipart(client, image_bytes, params=None, **kwargs):
    data = {"params": json.dumps(params)} if params is not None else {}
    return client.post("/v1/classify?embed=all", files={"image": ("photo", image_bytes, "application/octet-stream")}, data=data, **kwargs)


def as_json(client, image_bytes, params=None, **kwargs):
    body = {"inputs": {"image": {"base64": base64.b64encode(image_bytes).decode()}}}
    if params is not None:
        body["params"] = params
    return client.post("/v1/classify?embed=all", json=body, **kwargs)


@pytest.mark.parametrize("send", [multipart, as_json], ids=["multipart", "json"])
def test_chelsea_is_a_cat_and_coffee_is_espresso(client, chelsea, coffee, send):
    cat = send(client, encode(chelsea, "JPEG", quality=92), {"top_k": 3})
    assert cat.status_code == 200, cat.text
    assert cat.headers["content-type"] == "application/json"
    assert CAT_CLASSES & {entry["label"] for entry in cat.json()["data"]["top"]}

    espresso = send(client, encode(coffee, "PNG"))
    body = espresso.json()
    assert body["data"]["top"][0]["label"] == "espresso"
    assert len(body["data"]["top"]) == 5  # the default top_k
    assert body["method"] == "classify" and body["model"] == "efficientnet_lite0"
    assert set(body["data"]["timings"]) >= {"total_ms", "decode_ms", "encode_ms"}
    [artifact] = body["artifacts"]
    assert body["main"] == artifact["name"] == "input"
    assert (artifact["kind"], artifact["media_type"], artifact["width"], artifact["height"]) == ("image", "image/png", 224, 224)
    picture = Image.open(io.BytesIO(base64.b64decode(artifact["data_base64"])))
    assert picture.format == "PNG" and picture.size == (224, 224)


def test_accept_png_returns_the_main_picture(client, coffee):
    response = multipart(client, encode(coffee), {"fit": "crop"}, headers={"accept": "image/png"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.format == "PNG" and picture.size == (224, 224)
    timing = dict(part.strip().split(";dur=") for part in response.headers["server-timing"].split(","))
    assert set(timing) == {"engine", "decode", "encode"} and float(timing["engine"]) > 0


def test_artifact_by_name_and_unknown_artifact(client, coffee):
    response = client.post(
        "/v1/classify?artifact=input", files={"image": ("c.png", encode(coffee), "image/png")}, headers={"accept": "*/*"}
    )
    assert response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (224, 224)
    missing = client.post("/v1/classify?artifact=nope", files={"image": ("c.png", encode(coffee), "image/png")})
    assert (missing.status_code, missing.json()["code"]) == (404, "unknown_artifact")
    assert "input" in missing.json()["detail"]


def returned_picture(response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(base64.b64decode(response.json()["artifacts"][0]["data_base64"]))).convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


def test_exif_orientation_is_applied(client, chelsea):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    tagged = returned_picture(multipart(client, encode(chelsea, "JPEG", quality=95, exif=exif)))
    upright = returned_picture(multipart(client, encode(chelsea.transpose(Image.Transpose.ROTATE_270))))
    sideways = returned_picture(multipart(client, encode(chelsea)))
    assert mean_difference(tagged, upright) < 4
    assert mean_difference(tagged, sideways) > 20


def test_rgba_is_composited_on_white(client, chelsea):
    rgba = chelsea.convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    alpha.paste(255, (60, 60, rgba.width - 60, rgba.height - 60))
    rgba.putalpha(alpha)
    response = multipart(client, encode(rgba), {"top_k": 3})
    assert CAT_CLASSES & {entry["label"] for entry in response.json()["data"]["top"]}
    assert returned_picture(response).getpixel((2, 2)) == (255, 255, 255)


def test_palette_and_greyscale_photos_work(client, chelsea):
    palette = chelsea.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    response = as_json(client, encode(palette, "GIF"), {"top_k": 3})
    assert CAT_CLASSES & {entry["label"] for entry in response.json()["data"]["top"]}
    grey = returned_picture(multipart(client, encode(chelsea.convert("L"))))
    pixels = np.asarray(grey)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
