"""torch.export (.pt2) checks: every graph node on the allowlist (a canary file proves ``from_file`` never ran),
guard code never run, odd JSON a 4xx, and a zip that inflates past the cap refused before it is read."""

import io
import operator
import time

import pytest
import torch
import torch.fx as fx

from engine.errors import ModelRejected
from engine.models.export_checks import check_inflated_size, check_program
from engine.models.formats import export_program_to_onnx, read_program
from tests.hostile_files import (
    Canary, pt2_reading_file, pt2_with_guard_code, pt2_with_list_weights_config, pt2_with_zero_member,
)
from tests.model_files import pt2_bytes, tiny_net

X = torch.zeros(1, 3, 64, 64)


def test_the_from_file_program_really_overwrites_its_file_when_run_unchecked(tmp_path):
    """The attack is real: loaded and run without the checks, the program rewrites the file."""
    canary = Canary(tmp_path / "target.bin")
    program = torch.export.load(io.BytesIO(pt2_reading_file(canary.path)))
    program.module()(X)
    assert canary.path.read_bytes()[:16] == b"X" * 16


def test_a_program_calling_from_file_is_refused_by_name_and_the_file_is_untouched(tmp_path):
    canary = Canary(tmp_path / "target.bin")
    data = pt2_reading_file(canary.path)
    for attempt in (read_program, export_program_to_onnx):
        with pytest.raises(ModelRejected) as caught:
            attempt(data)
        assert caught.value.code == "unsupported_operator" and "aten::from_file" in caught.value.message
    assert canary.untouched()


def test_guard_code_in_the_archive_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    data = pt2_with_guard_code(marker)
    unchecked = torch.export.load(io.BytesIO(data))
    unchecked.module()(X)
    assert marker.exists()  # the attack is real: module() compiles and runs the archive's guard code
    marker.unlink()
    read_program(data).module()(X)
    export_program_to_onnx(data)
    assert not marker.exists()


def _program_calling(target, args) -> object:
    """A stand-in program whose graph is one call (check_program reads only ``.graph``)."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    graph.output(graph.call_function(target, (x, *args)))
    return type("Program", (), {"graph": graph})()


@pytest.mark.parametrize("target, args, named", [
    (torch.ops.aten.add.out, (1.0,), "out= argument"),
    (torch.ops.aten.bernoulli.default, (), "aten::bernoulli"),
    (torch.ops.aten.empty_like.default, (), "aten::empty_like"),
    (torch.ops.higher_order.cond, (), "cond"),
    (print, (), "print"),
])
def test_other_nodes_off_the_allowlist_are_refused_by_name(target, args, named):
    with pytest.raises(ModelRejected) as caught:
        check_program(_program_calling(target, args))
    assert caught.value.code == "unsupported_operator" and named in caught.value.message


def test_the_allowlist_accepts_what_exports_of_cnns_hold():
    check_program(_program_calling(torch.ops.aten.relu_.default, ()))  # in-place forms of allowed operators
    check_program(_program_calling(operator.getitem, (0,)))
    program = read_program(pt2_bytes(tiny_net(), (64, 64)))
    assert {str(node.target) for node in program.graph.nodes if node.op == "call_function"} == {
        "aten.conv2d.default", "aten.batch_norm.default", "aten.relu.default", "aten.hardtanh.default", "aten.mean.dim", "aten.linear.default",
    }


def test_a_weights_config_that_is_a_json_list_is_a_clear_refusal():
    with pytest.raises(ModelRejected) as caught:
        read_program(pt2_with_list_weights_config())
    assert caught.value.code == "not_a_model" and "model_weights_config.json" in caught.value.message


def test_a_member_that_inflates_past_the_cap_is_refused_from_the_directory_alone():
    data = pt2_with_zero_member(2**30)
    assert len(data) < 8 * 2**20
    start = time.perf_counter()
    with pytest.raises(ModelRejected) as caught:
        check_inflated_size(data, 256 * 2**20)
    assert time.perf_counter() - start < 1
    assert caught.value.code == "model_too_large"
    assert "padding.pt alone 1,073,741,824" in caught.value.message and "268,435,456" in caught.value.message
    check_inflated_size(pt2_bytes(tiny_net(), (64, 64)), 256 * 2**20)
