"""evaluate_attribution on real EfficientNet-Lite0 weights and real photos."""

import json

import pytest
import torch

from engine.attribution.evaluation.faithfulness import area
from engine.attribution.evaluation.randomisation import independent, parameter_groups
from engine.errors import InvalidParams
from engine.hooks import hook_count
from engine.run import run_method


def test_groups_run_from_the_output_down_and_randomising_one_leaves_the_rest(efficientnet):
    groups = parameter_groups(efficientnet.net)
    assert groups[:3] == ["classifier", "bn2", "conv_head"] and groups[-1] == "conv_stem"
    assert groups.index("blocks.6") < groups.index("blocks.0")
    group, copy = next(independent(efficientnet, (64, 64)))
    assert group == "classifier" and copy.input_size == (64, 64)
    mine, theirs = dict(efficientnet.net.named_parameters()), dict(copy.net.named_parameters())
    changed = {name for name in mine if not torch.equal(mine[name], theirs[name])}
    assert changed == {"classifier.weight", "classifier.bias"} or changed == {"classifier.weight"}


def test_evaluation_leaves_the_served_model_bit_identical_and_reports_a_table(efficientnet, chelsea):
    before = {name: t.clone() for name, t in efficientnet.state_dict().items()}
    result = run_method(
        "evaluate_attribution", "efficientnet_lite0", {"images": [chelsea]},
        {"methods": ["saliency"], "size": 64, "deletion_steps": 4}, device="cpu",
    )
    after = efficientnet.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert hook_count(efficientnet) == 0
    row = json.loads(json.dumps(result.data))["methods"]["saliency"]
    groups = parameter_groups(efficientnet.net)
    assert [s["layer"] for s in row["cascading"]] == groups
    assert all(-1 <= s["spearman"] <= 1 and -1 <= s["ssim"] <= 1 for s in row["cascading"])
    assert row["runtime_ms"] > 0 and 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
    assert {"cascading_randomisation", "deletion_curves", "insertion_curves", "cascading_maps"} <= set(result.images)


def test_bad_requests_are_refused(chelsea):
    for params in ({"methods": ["segmentation"]}, {"methods": ["saliency", "saliency"]},
                   {"methods": ["saliency"], "method_params": {"gradcam": {}}},
                   {"methods": ["integrated_gradients"], "method_params": {"integrated_gradients": {"steps": 1}}}):
        with pytest.raises(InvalidParams):
            run_method("evaluate_attribution", "efficientnet_lite0", {"images": [chelsea]}, params, device="cpu")


def test_area_is_the_trapezoid_mean():
    assert area([1.0, 1.0, 1.0]) == 1.0 and area([1.0, 0.0, 0.0]) == 0.25


@pytest.mark.slow
def test_gradient_and_gradcam_decorrelate_when_the_network_is_randomised(chelsea):
    """Adebayo et al. 2018's direction; guided backprop's value is reported (they found it barely changes)."""
    result = run_method(
        "evaluate_attribution", "efficientnet_lite0", {"images": [chelsea]},
        {"methods": ["saliency", "gradcam", "guided_backprop"], "faithfulness": False}, device="cpu",
    )
    rows = result.data["methods"]
    for name in ("saliency", "gradcam"):
        assert rows[name]["cascading"][-1]["layer"] == "conv_stem"
        assert rows[name]["cascading"][-1]["spearman"] < 0.3, rows[name]["cascading"]
    guided = rows["guided_backprop"]["cascading"]
    assert len(guided) == len(rows["saliency"]["cascading"])
    # guided backprop barely changes while the classifier, the head and the last block are random
    assert [s["layer"] for s in guided[:4]] == ["classifier", "bn2", "conv_head", "blocks.6"]
    assert min(s["spearman"] for s in guided[:4]) > 0.9


@pytest.mark.slow
def test_deletion_auc_of_real_maps_beats_a_random_map(chelsea, coffee):
    for photo in (chelsea, coffee):
        result = run_method(
            "evaluate_attribution", "efficientnet_lite0", {"images": [photo]},
            {"methods": ["saliency", "occlusion", "integrated_gradients"], "randomization": "none",
             "method_params": {"integrated_gradients": {"steps": 16}}}, device="cpu",
        )
        random_auc = result.data["random_map"]["deletion_auc"]
        for name, row in result.data["methods"].items():
            assert row["deletion_auc"] < random_auc, (name, row["deletion_auc"], random_auc)
