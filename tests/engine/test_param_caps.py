"""Every size and count param of every registered method is capped, so no request can ask for
unbounded work. Indexes (a class, a channel, a neuron's position) are not sizes: each method checks
them against the model and refuses one out of range (404/422)."""

import pytest

from engine.registry import all_methods

INDEXES = {"target_class", "target", "class", "channel", "channels[]", "neuron[0]", "neuron[1]", "x", "y"}


def _unbounded(schema: dict, defs: dict, path: str) -> list[str]:
    if "$ref" in schema:
        return _unbounded(defs[schema["$ref"].rsplit("/", 1)[1]], defs, path)
    found = []
    kind = schema.get("type")
    name = path.rsplit(".", 1)[-1]
    bounded = {"maximum", "exclusiveMaximum", "enum", "const"} & set(schema)
    if kind == "integer" and name not in INDEXES and not bounded:
        found.append(path)
    if kind == "array":
        if "maxItems" not in schema:
            found.append(path)
        for i, item in enumerate(schema.get("prefixItems", [])):
            found += _unbounded(item, defs, f"{path}[{i}]")
        if "items" in schema:
            found += _unbounded(schema["items"], defs, f"{path}[]")
    for key in ("anyOf", "oneOf", "allOf"):
        for option in schema.get(key, []):
            found += _unbounded(option, defs, path)
    for name, sub in schema.get("properties", {}).items():
        found += _unbounded(sub, defs, f"{path}.{name}")
    return found


@pytest.mark.parametrize("method", all_methods(), ids=lambda m: m.name)
def test_every_number_and_list_param_has_an_upper_bound(method):
    schema = method.params.model_json_schema()
    assert _unbounded(schema, schema.get("$defs", {}), method.name) == []
