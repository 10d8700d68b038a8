"""Inline calls over the inline budget are refused at once (before any work), with a message that
says to submit a job and which param to change; the service keeps answering meanwhile."""

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

EXPENSIVE = {
    "occlusion window 1 stride 1": ("occlusion", "efficientnet_lite0", {"window": 1, "stride": 1}, "stride"),
    "occlusion window 8 stride 4": ("occlusion", "efficientnet_lite0", {"window": 8, "stride": 4}, "stride"),
    "filters of block5_conv4 at their caps": (
        "filters", "vgg19", {"layer": "block5_conv4", "max_filters": 1024, "max_input_channels": 1024, "tile_size": 256},
        "max_filters",
    ),
    "activations at size 1024": ("activations", "vgg19", {"layer": "block1_conv1", "size": 1024}, "size"),
}


def _png(picture) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def chelsea_b64(chelsea):
    return _png(chelsea.resize((224, 224)))


def _body(method, model, params, picture):
    inputs = {} if method == "filters" else {"image": {"base64": picture}}
    return {"model": model, "params": params, "inputs": inputs}


@pytest.fixture(scope="module")
def warm(client, chelsea_b64):
    """Both models loaded (as on a running server), so what is timed is the refusal only."""
    for model in ("efficientnet_lite0", "vgg19"):
        assert client.post("/v1/activations", json=_body("activations", model, {"size": 32}, chelsea_b64)).status_code == 200


@pytest.mark.parametrize("case", EXPENSIVE, ids=str)
def test_an_expensive_inline_call_is_refused_within_a_second_naming_the_param(client, warm, chelsea_b64, case):
    method, model, params, param = EXPENSIVE[case]
    start = time.perf_counter()
    response = client.post(f"/v1/{method}", json=_body(method, model, params, chelsea_b64))
    elapsed = time.perf_counter() - start
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "over_inline_budget"
    assert "POST /v1/jobs" in problem["detail"] and param in problem["detail"]
    assert set(problem["cost"]) == {"passes", "pixels", "bytes"}
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s"


def test_the_estimates_match_the_sizes_named_in_the_issue(client, warm, chelsea_b64):
    """50,176 windows + the clean pass; the ~17 GB filters grid; the ~270 MB activations array."""
    costs = {
        case: client.post(f"/v1/{m}", json=_body(m, model, p, chelsea_b64)).json()["cost"]
        for case, (m, model, p, _) in EXPENSIVE.items()
    }
    assert costs["occlusion window 1 stride 1"]["passes"] == 224 * 224 + 1
    assert costs["occlusion window 8 stride 4"]["passes"] == 55 * 55 + 1
    # 512 filters x 512 input channels, each a 3x3 kernel upscaled x86 (+1 px border): one grey byte per pixel
    assert costs["filters of block5_conv4 at their caps"]["pixels"] == 512 * 512 * 259 * 259
    # block1_conv1 at 1024: 64 float32 maps of 1024 x 1024 (268 MB), returned and drawn
    assert costs["activations at size 1024"]["bytes"] > 2 * 64 * 1024 * 1024 * 4


def test_other_requests_are_answered_while_expensive_ones_are_refused(client, warm, chelsea_b64):
    cheap = _body("classify", "efficientnet_lite0", {}, chelsea_b64)
    with ThreadPoolExecutor(8) as pool:
        refused = [
            pool.submit(client.post, f"/v1/{m}", json=_body(m, model, p, chelsea_b64))
            for _ in range(2) for m, model, p, _ in EXPENSIVE.values()
        ]
        answered = [pool.submit(client.post, "/v1/classify", json=cheap) for _ in range(4)]
        assert [f.result().status_code for f in refused] == [422] * len(refused)
        results = [f.result() for f in answered]
    assert [r.status_code for r in results] == [200] * 4
    assert results[0].json()["data"]["top"][0]["label"] in {"tabby", "tiger cat", "Egyptian cat"}


def test_a_call_within_the_budget_still_runs(client, warm, chelsea_b64):
    response = client.post("/v1/occlusion", json=_body("occlusion", "efficientnet_lite0", {"window": 56, "stride": 56}, chelsea_b64))
    assert response.status_code == 200, response.text
    assert response.json()["data"]["windows"] == 16
