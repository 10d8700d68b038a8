"""Registering, listing, describing and removing model files over HTTP (real Redis, filesystem storage)."""

import io
import json
import pickle
import threading
import zipfile

import numpy as np
import onnx
import pytest
import torch
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from api.app import create_app
from tests.api.conftest import ADMIN_KEY, make_settings
from tests.model_files import metadata, onnx_bytes, pt2_bytes, register, registry_client, tiny_net  # noqa: F401
from tests.pictures import encode

SIZE = (64, 64)
LABELS = ["ant", "bee", "cat", "dog"]


@pytest.fixture(scope="module")
def tiny_onnx() -> bytes:
    return onnx_bytes(tiny_net(), SIZE)


@pytest.fixture(scope="module")
def kept(registry_client, tiny_onnx):
    """A model registered before the bad files arrive; every refusal must leave it intact."""
    response = register(registry_client, "kept", tiny_onnx, metadata("kept", SIZE, LABELS))
    assert response.status_code == 201, response.text
    return response.json()


def assert_kept_intact(client, kept, small_chelsea):
    described = client.get("/v1/models/kept")
    assert described.status_code == 200
    assert described.json()["sha256"] == kept["sha256"]
    answer = client.post("/v1/classify", files={"image": ("p.png", encode(small_chelsea, "PNG"), "image/png")}, data={"model": "kept"})
    assert answer.status_code == 200, answer.text
    assert {entry["label"] for entry in answer.json()["data"]["top"]} == set(LABELS)


def test_registered_model_is_listed_described_and_served(registry_client, kept, small_chelsea):
    listed = {m["name"]: m for m in registry_client.get("/v1/models").json()["models"]}
    assert {"efficientnet_lite0", "vgg19", "kept"} <= set(listed)
    assert listed["kept"]["format"] == "onnx" and not listed["kept"]["builtin"]
    assert listed["efficientnet_lite0"]["builtin"]

    assert kept["num_classes"] == 4 and kept["input_size"] == [64, 64] and kept["labels"] == LABELS
    layers = {layer["name"]: layer for layer in kept["layers"]}
    convs = [layer for layer in kept["layers"] if layer["type"] == "Conv2d"]
    assert [c["shape"] for c in convs] == [[8, 64, 64], [16, 32, 32]]
    assert kept["first_conv"] == convs[0]["name"]
    assert layers[kept["default_layer"]]["shape"] == [16, 32, 32]  # the last spatial layer (the ReLU6)
    support = {entry["method"]: entry for entry in kept["supported_methods"]}
    assert all(entry["supported"] for entry in support.values()), support
    assert_kept_intact(registry_client, kept, small_chelsea)


def test_same_file_twice_is_one_stored_copy(registry_client, kept, tiny_onnx):
    twin = register(registry_client, "kept-twin", tiny_onnx, metadata("kept-twin", SIZE, LABELS))
    assert twin.status_code == 201, twin.text
    assert twin.json()["sha256"] == kept["sha256"]
    storage = registry_client.app.state.model_store().storage
    assert sorted(p.name for p in (storage.root / "models" / "files").iterdir()) == [kept["sha256"]]
    assert registry_client.delete("/v1/models/kept-twin").status_code == 204
    assert (storage.root / "models" / "files" / kept["sha256"]).is_file()  # still used by "kept"


def test_delete_removes_the_model_everywhere_in_the_api(registry_client, tiny_onnx, small_chelsea):
    assert register(registry_client, "doomed", tiny_onnx, metadata("doomed", SIZE, LABELS)).status_code == 201
    files = {"image": ("p.png", encode(small_chelsea, "PNG"), "image/png")}
    assert registry_client.post("/v1/saliency", files=files, data={"model": "doomed"}).status_code == 200
    assert registry_client.delete("/v1/models/doomed").status_code == 204
    assert registry_client.get("/v1/models/doomed").json()["code"] == "unknown_model"
    assert registry_client.post("/v1/saliency", files=files, data={"model": "doomed"}).status_code == 404
    assert "doomed" not in {m["name"] for m in registry_client.get("/v1/models").json()["models"]}
    assert registry_client.delete("/v1/models/doomed").status_code == 404


def test_builtin_models_cannot_be_deleted_or_shadowed(registry_client, tiny_onnx):
    assert registry_client.delete("/v1/models/vgg19").json()["code"] == "builtin_model"
    response = register(registry_client, "efficientnet_lite0", tiny_onnx, metadata("efficientnet_lite0", SIZE, LABELS))
    assert response.status_code == 409 and response.json()["code"] == "model_name_taken"


def same_store_settings(client: TestClient, **overrides):
    """Settings of a second app on the first one's Redis and storage (a process has one model source)."""
    settings = client.app.state.settings
    return make_settings(redis_url=settings.redis_url, storage_dir=settings.storage_dir, **overrides)


def test_registration_needs_the_admin_scope(registry_client, tiny_onnx):
    keyed = same_store_settings(registry_client, open_access=False, admin_key=ADMIN_KEY)
    with TestClient(create_app(keyed)) as client:
        made = client.post("/v1/keys", json={"scope": "submit"}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        submitter = {"X-API-Key": made.json()["key"]}
        response = client.post(
            "/v1/models", headers=submitter,
            files={"file": ("m.onnx", tiny_onnx, "application/octet-stream")},
            data={"metadata": json.dumps(metadata("nope", SIZE, LABELS))},
        )
        assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"
        assert client.delete("/v1/models/kept", headers=submitter).json()["code"] == "insufficient_scope"
        assert client.get("/v1/models/nope", headers=submitter).status_code == 404  # nothing was registered


def test_two_registrations_of_one_name_race_to_one_winner(registry_client, tiny_onnx):
    barrier, answers = threading.Barrier(2), []

    def attempt():
        barrier.wait()
        answers.append(register(registry_client, "raced", tiny_onnx, metadata("raced", SIZE, LABELS)))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    assert [a.json()["code"] for a in answers if a.status_code == 409] == ["model_name_taken"]


def test_a_file_registered_again_while_its_last_model_is_deleted_stays_stored(registry_client, small_chelsea, monkeypatch):
    """Deleting a file's last model removes the file; a registration of the same file that claims its name in
    between (after the delete counted the file unused, before it removed it) must not be left without a file."""
    data, labels = onnx_bytes(tiny_net(3), SIZE), ["x", "y", "z"]
    assert register(registry_client, "going", data, metadata("going", SIZE, labels)).status_code == 201
    storage = registry_client.app.state.model_store().storage
    remove, again, answers = storage.delete, [], []

    def delete_while_registering(key):
        if key.startswith("models/files/") and not again:
            again.append(threading.Thread(target=lambda: answers.append(register(registry_client, "coming", data, metadata("coming", SIZE, labels)))))
            again[0].start()
            again[0].join(5)  # the registration runs to its end here, unless it waits for this delete
        remove(key)

    monkeypatch.setattr(storage, "delete", delete_while_registering)
    assert registry_client.delete("/v1/models/going").status_code == 204
    again[0].join(60)
    monkeypatch.undo()
    (registered,) = answers
    assert registered.status_code == 201, registered.text
    classified = registry_client.post("/v1/classify", files={"image": ("p.png", encode(small_chelsea, "PNG"), "image/png")}, data={"model": "coming"})
    assert classified.status_code == 200, classified.text
    assert (storage.root / "models" / "files" / registered.json()["sha256"]).is_file()


# -- bad files: each a clear 4xx, every stored model intact ------------------------------------------


class WritesAFile:
    """Unpickling this writes a file: proof that nothing was unpickled is that the file is absent."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


def pickle_payloads(path) -> dict[str, bytes]:
    raw = pickle.dumps(WritesAFile(path))
    saved = io.BytesIO()
    torch.save({"weights": WritesAFile(path)}, saved)
    return {"raw_pickle": raw, "torch_save": saved.getvalue()}


def pt2_with_pickled_sample_inputs(path) -> bytes:
    """A real .pt2 whose sample inputs are replaced by a pickle that torch.export.load would unpickle."""
    original = zipfile.ZipFile(io.BytesIO(pt2_bytes(tiny_net(), SIZE)))
    saved = io.BytesIO()
    torch.save((WritesAFile(path),), saved)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in original.namelist():
            data = saved.getvalue() if name.endswith("sample_inputs/model.pt") else original.read(name)
            archive.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("variant", ["raw_pickle", "torch_save", "pt2_sample_inputs"])
def test_a_pickle_is_never_unpickled(registry_client, kept, small_chelsea, tmp_path, variant):
    marker = tmp_path / f"{variant}.txt"
    data = pt2_with_pickled_sample_inputs(marker) if variant == "pt2_sample_inputs" else pickle_payloads(marker)[variant]
    response = register(registry_client, f"evil-{variant.replace('_', '-')}", data, metadata("evil", SIZE, LABELS) | {"name": f"evil-{variant.replace('_', '-')}"})
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "pickled_model"
    assert not marker.exists()
    assert_kept_intact(registry_client, kept, small_chelsea)


def unknown_operator_onnx() -> bytes:
    """A valid ONNX graph (the checker accepts it) using Hardmax, which onnx2torch cannot convert."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Hardmax", ["f"], ["y"], axis=1)],
        "hardmax",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def non_float_output_onnx(to: int) -> bytes:
    """A valid conv -> relu -> pool classifier of 4 classes whose scores are cast to ``to`` (an integer or bool type):
    it runs, but no softmax or gradient can be taken of its output."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], np.random.default_rng(0).random(12).tolist())
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Cast", ["f"], ["y"], to=to)]
    graph = helper.make_graph(nodes, "cast", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 64, 64])],
                              [helper.make_tensor_value_info("y", to, ["b", 4])], [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def bad_files(tiny_onnx: bytes) -> dict[str, tuple[bytes, dict, int, str]]:
    rng = np.random.default_rng(0)
    return {
        "random_bytes": (rng.bytes(4096), metadata("bad-random", SIZE, LABELS), 400, "not_a_model"),
        "truncated_onnx": (tiny_onnx[: len(tiny_onnx) // 2], metadata("bad-truncated", SIZE, LABELS), 400, "not_a_model"),
        "unknown_operator": (unknown_operator_onnx(), metadata("bad-operator", SIZE, ["a", "b", "c"]), 422, "unsupported_operator"),
        "output_vs_labels": (tiny_onnx, metadata("bad-labels", SIZE, LABELS + ["emu"]), 422, "output_mismatch"),
        "unknown_layer": (tiny_onnx, metadata("bad-layer", SIZE, LABELS, gradcam_layer="no/such/layer"), 422, "invalid_metadata"),
        "bad_metadata": (tiny_onnx, metadata("Bad Name!", SIZE, LABELS), 422, "invalid_metadata"),
        "integer_output": (non_float_output_onnx(TensorProto.INT64), metadata("bad-int-output", SIZE, LABELS), 422, "output_mismatch"),
        "bool_output": (non_float_output_onnx(TensorProto.BOOL), metadata("bad-bool-output", SIZE, LABELS), 422, "output_mismatch"),
    }


@pytest.mark.parametrize("case", ["random_bytes", "truncated_onnx", "unknown_operator", "output_vs_labels", "unknown_layer", "bad_metadata",
                                  "integer_output", "bool_output"])
def test_bad_model_files_are_refused_clearly(registry_client, kept, tiny_onnx, small_chelsea, case):
    data, meta, status, code = bad_files(tiny_onnx)[case]
    response = register(registry_client, meta["name"], data, meta)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["detail"]
    if case == "unknown_operator":
        assert "Hardmax" in body["detail"]
    if case == "output_vs_labels":
        assert "(1, 5)" in body["detail"] and "(1, 4)" in body["detail"]
    if case in ("integer_output", "bool_output"):  # it used to register, and classify and the gradient methods answered 500
        assert "floating-point" in body["detail"] and ("int64" in body["detail"] or "bool" in body["detail"])
    assert registry_client.get(f"/v1/models/{meta['name']}").status_code in (404, 422)
    assert_kept_intact(registry_client, kept, small_chelsea)


def test_a_file_over_the_size_limit_is_a_413(registry_client, kept, small_chelsea, tmp_path):
    storage = registry_client.app.state.model_store().storage
    before = sorted(p.name for p in (storage.root / "models" / "files").iterdir())
    with TestClient(create_app(same_store_settings(registry_client, max_model_bytes=4096))) as small:
        response = register(small, "too-big", b"\0" * (4096 + MODEL_SLACK), metadata("too-big", SIZE, LABELS))
    assert response.status_code == 413, response.text
    assert response.json()["code"] in ("payload_too_large", "model_too_large")
    assert sorted(p.name for p in (storage.root / "models" / "files").iterdir()) == before
    assert_kept_intact(registry_client, kept, small_chelsea)


MODEL_SLACK = 16 * 1024 * 1024  # past the metadata allowance too, so the body limit answers unread


def test_a_file_just_over_the_limit_inside_the_allowance_is_a_413(registry_client):
    with TestClient(create_app(same_store_settings(registry_client, max_model_bytes=4096))) as small:
        response = register(small, "too-big", b"\0" * 5000, metadata("too-big", SIZE, LABELS))
    assert response.status_code == 413 and response.json()["code"] == "model_too_large"


def test_metadata_must_be_json(registry_client, tiny_onnx):
    response = registry_client.post("/v1/models", files={"file": ("m", tiny_onnx, "application/octet-stream")}, data={"metadata": "{not json"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_metadata"
    assert json.loads(response.text)["detail"].startswith("invalid model metadata")


@pytest.mark.parametrize("preprocessing, field", [
    ('{"mean": [NaN, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}', "preprocessing.mean.0"),
    ('{"mean": [0.5, 0.5, 0.5], "std": [0.2, Infinity, 0.2]}', "preprocessing.std.1"),  # the channel ignored, its std shown as null
    ('{"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 1e-300]}', "preprocessing.std.2"),  # 0 in float32: a division by zero
    ('{"mean": [1e300, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}', "preprocessing.mean.0"),  # inf in float32
])
def test_preprocessing_must_be_finite_float32_numbers(registry_client, kept, tiny_onnx, small_chelsea, preprocessing, field):
    """JSON parsers take NaN and Infinity; the network computes (pixel - mean) / std in float32. A value it cannot
    compute with is the metadata's fault, named as such, and registers nothing."""
    raw = json.dumps(metadata("odd-preprocessing", SIZE, LABELS)).replace(json.dumps(metadata("x", SIZE, LABELS)["preprocessing"]), preprocessing)
    response = registry_client.post("/v1/models", files={"file": ("m", tiny_onnx, "application/octet-stream")}, data={"metadata": raw})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_metadata" and field in response.json()["detail"]
    assert registry_client.get("/v1/models/odd-preprocessing").status_code == 404
    assert_kept_intact(registry_client, kept, small_chelsea)


def test_more_than_one_model_file_is_refused_by_the_limit(registry_client, kept, tiny_onnx, small_chelsea):
    file = ("m.onnx", tiny_onnx, "application/octet-stream")
    response = registry_client.post("/v1/models", files=[("file", file), ("file", file)],
                                    data={"metadata": json.dumps(metadata("twice", SIZE, LABELS))})
    assert response.status_code == 413 and response.headers["content-type"] == "application/problem+json", response.text
    assert response.json()["code"] == "too_many_files" and "at most 1 file" in response.json()["detail"]
    assert registry_client.get("/v1/models/twice").status_code == 404
    assert_kept_intact(registry_client, kept, small_chelsea)
