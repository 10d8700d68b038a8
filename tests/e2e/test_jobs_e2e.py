"""Jobs end to end: upload -> submit -> follow (poll or SSE) -> download, on both storage backends."""

import io
import json

import httpx
import numpy as np
from PIL import Image


def test_classify_job_round_trip_by_polling(stack, chelsea):
    image_id = stack.upload(chelsea.resize((96, 64)))
    response = stack.submit("classify", image_id, top_k=3)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    assert int(response.headers["Retry-After"]) >= 1
    job = stack.wait(response.json()["id"])
    assert job["state"] == "succeeded", job
    assert job["deliveries"] == 1
    assert job["result"]["top"][0]["label"] in {"Egyptian cat", "tabby", "tiger cat"}
    main = next(a for a in job["artifacts"] if a["main"])
    png = stack.client.get(main["url"])
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(png.content))
    image.verify()
    assert image.format == "PNG"
    data = stack.client.get(next(a["url"] for a in job["artifacts"] if a["name"] == "result.json")).json()
    assert data["top"] == job["result"]["top"]
    if stack.settings.storage == "s3":
        direct = httpx.get(main["download_url"])  # presigned for the public endpoint (localhost)
        assert direct.status_code == 200 and direct.content == png.content
    else:
        assert main["download_url"] is None
