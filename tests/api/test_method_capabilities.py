"""What a method can do is declared on the method, and read from there by the web page's catalogue, the
evaluation list and the README's table: a new method that declares it appears in all three with no other edit."""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import Field

from api.app import create_app
from api.export_docs import README, methods_table, with_table
from engine import registry
from engine.attribution.params import AttributionParams
from engine.attribution.render import attribution_result
from engine.cost import Cost
from engine.registry import all_methods, get_method, parse_params
from tests.api.conftest import make_settings


class GlowParams(AttributionParams):
    strength: float = Field(1.0, ge=0, le=1, description="how strongly the map glows")


def glow(model, inputs, params, progress):
    image = model.fit_input(inputs["image"], params.fit)
    values = np.ones(image.size[::-1], dtype=np.float32) * params.strength
    return attribution_result(model, "glow", image, values, params, {"index": 0}, "positive", {})


@pytest.fixture
def glow_method():
    """A new attribution method, declared with its capabilities and nothing else."""
    method = registry.Method(name="glow", summary="Test: a map that glows everywhere", category="attribute", params=GlowParams,
                             run=glow, cost=lambda model, params, images: Cost(1, 0, 0), requires=("classifier",),
                             evaluable=True, compare=True)
    registry.METHODS.add("glow", method)
    yield method
    registry.METHODS.remove("glow")


def test_a_new_method_appears_in_the_catalogue_the_evaluation_list_and_the_readme_table(glow_method):
    with TestClient(create_app(make_settings())) as client:
        listed = {m["name"]: m for m in client.get("/v1/methods").json()["methods"]}
        evaluate_schema = listed["evaluate_attribution"]["params_schema"]["properties"]["methods"]
    assert listed["glow"]["compare"] is True and listed["glow"]["evaluable"] is True  # the page checks the box from this
    assert "glow" in evaluate_schema["items"]["enum"]
    evaluate = get_method("evaluate_attribution")
    assert parse_params(evaluate, {"methods": ["glow"]}).methods == ["glow"]
    assert "| attribute | `glow` | inline or job | classifier | Test: a map that glows everywhere |" in methods_table(all_methods())


def test_an_undeclared_method_is_not_evaluable():
    evaluate = get_method("evaluate_attribution")
    with pytest.raises(Exception, match="classify cannot be evaluated"):
        parse_params(evaluate, {"methods": ["classify"]})


def test_the_committed_readme_table_is_the_registrys():
    builtin = [m for m in all_methods() if m.run.__module__.startswith("engine.")]
    current = README.read_text()
    assert with_table(current, methods_table(builtin)) == current, "regenerate it with `python -m api.export_docs`"


def test_the_page_reads_the_comparison_default_from_the_catalogue():
    script = (README.parent / "api" / "static" / "app.js").read_text()
    assert "method.compare" in script and "COMPARE_DEFAULT" not in script
