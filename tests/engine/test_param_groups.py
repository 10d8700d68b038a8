"""The schema's "group" of a setting (engine/params.py) files it on the web page: only the known groups, and a
setting folded away as rarely changed carries the words that explain it there."""

from typing import get_args

import pytest

from engine.params import Group
from engine.registry import all_methods, get_method


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.name)
def test_groups_are_known_and_folded_settings_are_explained(method):
    properties = method.params.model_json_schema().get("properties", {})
    grouped = {name: field["group"] for name, field in properties.items() if "group" in field}
    assert set(grouped.values()) <= set(get_args(Group))
    assert [name for name, group in grouped.items() if group == "advanced" and not properties[name].get("description")] == []


def test_class_visualization_shows_a_handful_and_folds_its_regularisers():
    properties = get_method("class_visualization").params.model_json_schema()["properties"]
    shown = sorted(name for name, field in properties.items() if field.get("group") != "advanced")
    assert shown == ["center_bias", "facets", "objectives", "parameterization", "size", "steps"]
    assert all(properties[name].get("group") == "advanced" for name in ("clip_contribution_percentile", "seed", "lr", "l2"))


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.name)
def test_every_method_shows_at_most_eight_settings_and_folds_the_rest(method):
    """The page shows what is not advanced: a handful a person reads at a glance, whatever the method."""
    properties = method.params.model_json_schema().get("properties", {})
    shown = [name for name, field in properties.items() if field.get("group") != "advanced"]
    assert len(shown) <= 8, shown
