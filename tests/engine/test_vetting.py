"""engine.models.vetting.vet: sizes and capabilities measured, the layer catalogue recorded, and the whole
attack corpus refused with the right code (in this process: the child's caps are tested in tests/worker)."""

import json

import onnx
import pytest

from engine.errors import ModelRejected, UnsupportedModel
from engine.models import vetting
from engine.models.registered import RegistrationLimits
from engine.models.vetted import Vetted
from engine.models.vetting import measured_sizes, probe_sizes, vet
from engine.models.zoo import Sizes
from tests import hostile_files as hostile
from tests.hostile_files import Canary
from tests.model_files import metadata, onnx_bytes, pt2_bytes, tiny_net, torchscript_bytes

SIZE = (64, 64)
LABELS = ["ant", "bee", "cat", "dog"]
LIMITS = RegistrationLimits(max_parameters=10**7, max_forward_seconds=60, max_nodes=20_000,
                            max_tensor_bytes=2**30, max_archive_bytes=256 * 2**20)
# tiny_net: conv 3->8 (3x3, 216 + 8), conv 8->16 (3x3, 1152 + 16), linear 16->4 (64 + 4): 1460 parameters;
# the ONNX export folds the batch norms into the convs, a .pt2 keeps them (8 + 8 and 16 + 16 more: 1508)
TINY_PARAMETERS = {"onnx": 1460, "torch_export": 1508}


@pytest.mark.parametrize("fmt", ["onnx", "torch_export"])
def test_a_healthy_model_is_measured(fmt):
    data = onnx_bytes(tiny_net(), SIZE) if fmt == "onnx" else pt2_bytes(tiny_net(), SIZE)
    vetted = vet(data, metadata("tiny", SIZE, LABELS), LIMITS)
    assert vetted.format == fmt and vetted.parameters == TINY_PARAMETERS[fmt]
    if fmt == "onnx":
        assert vetted.onnx == data  # the file itself is what gets stored and loaded
    else:
        assert onnx.load_model_from_string(vetted.onnx).graph.node  # the program's ONNX translation
    assert vetted.sizes.as_dict() == {"native": [64, 64], "min": [32, 32], "max": [512, 512], "fixed": False}
    assert dict(vetted.capabilities) == {"layers": None, "relu_rules": None, "incremental_occlusion": None, "resizable": None}
    convs = [entry for entry in vetted.catalogue if entry.type == "Conv2d"]
    assert [(c.shape, c.weight, c.leaf) for c in convs] == [((8, 64, 64), (8, 3, 3, 3), True), ((16, 32, 32), (16, 8, 3, 3), True)]
    assert all(entry.weight is None for entry in vetted.catalogue if entry.type != "Conv2d")
    assert vetted.metadata["first_conv"] == convs[0].name and vetted.metadata["gradcam_layer"]


def test_the_record_is_json_and_reads_back_equal():
    vetted = vet(onnx_bytes(tiny_net(), SIZE), metadata("tiny", SIZE, LABELS), LIMITS)
    record = json.loads(json.dumps(vetted.as_record()))
    assert "onnx" not in record
    assert Vetted.from_record(record, vetted.onnx) == vetted


def test_a_fixed_size_export_registers_as_fixed_at_its_native_size():
    vetted = vet(hostile.fixed_size_onnx(), metadata("fixed", SIZE, ["a", "b", "c"]), LIMITS)
    assert vetted.sizes.fixed and vetted.sizes.min == vetted.sizes.max == SIZE
    reason = vetted.capabilities["resizable"]
    assert "64x64 only" in reason and "32, 32" in reason and "128, 128" in reason


def test_a_capability_that_cannot_be_prepared_is_recorded_with_its_reason(monkeypatch):
    def refuse(model, rule):
        raise UnsupportedModel("cannot trace the model to rewrite its ReLUs: (the test's refusal)")

    monkeypatch.setattr(vetting, "build_rule_copy", refuse)
    vetted = vet(onnx_bytes(tiny_net(), SIZE), metadata("tiny", SIZE, LABELS), LIMITS)
    assert vetted.capabilities["relu_rules"] == "cannot trace the model to rewrite its ReLUs: (the test's refusal)"
    assert vetted.capabilities["incremental_occlusion"] is None


@pytest.mark.parametrize("native, expected", [
    ((224, 224), [(32, 32), (64, 64), (112, 112), (128, 128), (224, 224), (256, 256), (448, 448), (512, 512)]),
    # the aspect kept; 598x1200 and 512x1027 pass the 1024 px bound and are left out
    ((299, 600), [(32, 64), (64, 128), (128, 257), (150, 300), (256, 514), (299, 600)]),
    # a side below 32 px is probed only as declared
    ((40, 20), [(40, 20), (64, 32), (80, 40), (128, 64), (256, 128), (512, 256), (1024, 512)]),
])
def test_probe_sizes_span_what_the_methods_use_within_bounds(native, expected):
    assert probe_sizes(native) == expected


def test_the_measured_range_is_the_run_of_passing_sizes_around_the_native_one():
    refusals = {(32, 32): None, (64, 64): "too small", (128, 128): None, (224, 224): None, (256, 256): None, (448, 448): "fails"}
    assert measured_sizes((224, 224), refusals) == Sizes((224, 224), (128, 128), (256, 256))
    assert measured_sizes((224, 224), {(112, 112): "x", (224, 224): None, (448, 448): "y"}).fixed


# -- the attack corpus, at the engine level -------------------------------------------------------


def corpus(target) -> dict[str, tuple]:
    """case -> (how to build the file, its metadata, the code it is refused with); ``target`` is the file attacks aim at."""
    three = ["a", "b", "c"]
    return {
        "pt2_from_file": (lambda: hostile.pt2_reading_file(target), metadata("evil", SIZE, LABELS), "unsupported_operator"),
        "torchscript_from_file": (lambda: hostile.torchscript_reading_file(target), metadata("evil", SIZE, LABELS), "format_not_supported"),
        "onnx_external_constant": (lambda: hostile.external_data_onnx(target.name, "constant"), metadata("evil", SIZE, None), "invalid_onnx"),
        "onnx_external_subgraph": (lambda: hostile.external_data_onnx(target.name, "subgraph"), metadata("evil", SIZE, None), "invalid_onnx"),
        "constant_of_shape_bomb": (hostile.constant_of_shape_bomb, metadata("evil", SIZE, None), "tensor_too_large"),
        "input_dependent_bomb": (hostile.input_dependent_bomb, metadata("evil", SIZE, None), "data_dependent_shape"),
        "100k_nodes": (lambda: hostile.many_nodes_onnx(100_000), metadata("evil", SIZE, None), "too_many_nodes"),
        "weightless": (hostile.weightless_onnx, metadata("evil", SIZE, three), "no_parameters"),
        "pt2_list_config": (hostile.pt2_with_list_weights_config, metadata("evil", SIZE, LABELS), "not_a_model"),
        "pt2_zero_member": (lambda: hostile.pt2_with_zero_member(2**30), metadata("evil", SIZE, LABELS), "model_too_large"),
        "declared_wrong_format": (lambda: onnx_bytes(tiny_net(), SIZE), metadata("evil", SIZE, LABELS, format="torch_export"), "not_a_model"),
        "plain_torchscript": (lambda: torchscript_bytes(tiny_net()), metadata("evil", SIZE, LABELS), "format_not_supported"),
    }


CORPUS = list(corpus(None))


@pytest.mark.parametrize("case", CORPUS)
def test_the_attack_corpus_is_refused_with_its_code(tmp_path, monkeypatch, case):
    monkeypatch.chdir(tmp_path)  # where relative external-data paths point
    build, meta, code = corpus(tmp_path / "canary.bin")[case]
    data = build()
    canary = Canary(tmp_path / "canary.bin")
    with pytest.raises(ModelRejected) as caught:
        vet(data, meta, LIMITS)
    assert caught.value.code == code, caught.value.message
    assert canary.untouched()
