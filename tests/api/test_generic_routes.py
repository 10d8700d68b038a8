"""Every registered method gets its inline route and its documentation from the registry alone."""

import base64
import io

import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel

from engine.registry import Method, all_methods
from tests.pictures import encode

INLINE = [method for method in all_methods() if method.inline]
JOBS_ONLY = [method for method in all_methods() if not method.inline]


def resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.mark.parametrize("method", INLINE, ids=lambda method: method.name)
def test_openapi_documents_each_inline_method(client, method: Method):
    document = client.get("/openapi.json").json()
    operation = document["paths"][f"/v1/{method.name}"]["post"]
    content = operation["requestBody"]["content"]

    request = resolve(document, content["application/json"]["schema"])
    params = resolve(document, request["properties"]["params"])
    expected = method.params.model_json_schema(ref_template="#/components/schemas/{model}")
    expected.pop("$defs", None)
    assert params == expected
    inputs = resolve(document, request["properties"]["inputs"])
    assert set(inputs["properties"]) == {slot.name for slot in method.inputs}

    form = content["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {"model", "params", *(slot.name for slot in method.inputs)}
    assert resolve(document, form["properties"]["params"]["contentSchema"]) == params

    one, several = (resolve(document, s) for s in operation["responses"]["200"]["content"]["application/json"]["schema"]["oneOf"])
    assert set(one["properties"]) == {"method", "model", "main", "data", "artifacts"}
    assert set(several["properties"]) == {"method", "model", "results"}
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "image/png", "application/x-npy"}


def small_params(params: type[BaseModel]) -> dict:
    """Defaults, except integer ``*size`` fields set to 64 where their range allows it."""
    chosen = {}
    for name, field in params.model_fields.items():
        if name.endswith("size") and field.annotation is int:
            low = next((m.ge for m in field.metadata if getattr(m, "ge", None) is not None), 0)
            high = next((m.le for m in field.metadata if getattr(m, "le", None) is not None), 10**9)
            if low <= 64 <= high:
                chosen[name] = 64
    return chosen


@pytest.mark.parametrize("method", INLINE, ids=lambda method: method.name)
def test_every_inline_method_runs_over_http_with_default_params(client, astronaut, method: Method):
    picture = {"base64": base64.b64encode(encode(astronaut.resize((64, 64)))).decode()}
    inputs = {
        slot.name: [picture] * slot.min_count if slot.many else picture for slot in method.inputs if not slot.optional
    }
    response = client.post(f"/v1/{method.name}", json={"params": small_params(method.params), "inputs": inputs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == method.name and body["data"]["timings"]["total_ms"] > 0
    for artifact in body["artifacts"]:  # linked by default: fetched once each
        assert "data_base64" not in artifact
        download = client.get(artifact["url"])
        assert download.headers["content-type"] == artifact["media_type"]
        content = download.content
        if artifact["kind"] == "image":
            assert Image.open(io.BytesIO(content)).size == (artifact["width"], artifact["height"])
        else:
            array = np.load(io.BytesIO(content), allow_pickle=False)
            assert list(array.shape) == artifact["shape"] and array.dtype.str == artifact["dtype"]


@pytest.mark.parametrize("method", JOBS_ONLY, ids=lambda method: method.name)
def test_jobs_only_methods_point_to_the_jobs_api(client, method: Method):
    response = client.post(f"/v1/{method.name}", json={})
    assert response.status_code == 404 and response.json()["code"] == "method_not_inline"


def test_a_newly_registered_method_gets_a_route_with_no_code(probe_client, chelsea, coffee):
    document = probe_client.get("/openapi.json").json()
    assert "/v1/probe" in document["paths"]
    assert "ProbeParams" in document["components"]["schemas"]

    files = [("images", ("a.png", encode(chelsea), "image/png")), ("images", ("b.jpg", encode(coffee, "JPEG"), "image/jpeg"))]
    response = probe_client.post("/v1/probe", files=files, data={"params": '{"size": 40}'})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"]["count"] == 2 and body["main"] == "first"
    first, sizes = body["artifacts"]
    assert (first["name"], first["width"], first["height"]) == ("first", 40, 40)
    assert (sizes["name"], sizes["kind"], sizes["media_type"], sizes["shape"]) == ("sizes", "array", "application/x-npy", [2, 2])

    raw = probe_client.post("/v1/probe?artifact=sizes", files=files, headers={"accept": "application/x-npy"})
    assert raw.headers["content-type"] == "application/x-npy"
    assert np.load(io.BytesIO(raw.content)).tolist() == [list(chelsea.size), list(coffee.size)]
    wrong_type = probe_client.post("/v1/probe?artifact=sizes", files=files, headers={"accept": "image/png"})
    assert wrong_type.status_code == 406 and wrong_type.json()["code"] == "not_acceptable"
