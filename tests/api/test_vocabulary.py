"""One name per concept and one spelling convention in every public name (docs/vocabulary.md).

Walks every registered method's params (nested models included), their enum
values, the method names and categories, and every path of the OpenAPI
document: a concept's other names, a British spelling, or a hyphen in a path
fails here, naming where.
"""

import typing

from pydantic import BaseModel

from api.app import create_app
from engine.registry import all_methods
from tests.api.conftest import make_settings

# the one name -> the names it replaced (and other ways to say it), none of which a method may use
SYNONYMS = {
    "target_class": {"target", "class", "class_", "class_index", "label"},
    "neuron": {"x", "y", "position", "unit"},
    "normalization": {"normalise", "normalize", "normalisation", "scaling"},
    "steps": {"iterations", "passes", "n_steps", "num_steps", "epochs", "rounds"},
    "batch_size": {"internal_batch_size", "batch", "perturbations_per_eval"},
    "max_side": {"texture_size", "longest_side", "max_size"},
    "top_k": {"k", "top_channels", "topk", "top"},
    "tile_size": {"thumb_size", "thumbnail_size"},
    "base_channels": {"channels_first_layer"},
    "quadrature": {"method"},
    "projection": {"method"},
}
# British spellings, and the words they were in (a public name is American English)
BRITISH = {
    "normalise", "normalised", "normalisation", "randomise", "randomisation", "visualise", "visualisation", "optimise",
    "optimiser", "optimisation", "synthesise", "synthesised", "colour", "colours", "centre", "centred", "neighbour",
    "neighbours", "behaviour", "grey", "initialise", "initialisation", "parameterisation", "recognise", "stylise",
    "analyse", "favour", "licence", "modelling", "labelled",
}
UNITS = {  # a concept with units says them in its description
    "step_size": "8-bit grey levels",
    "eps": "8-bit grey levels",
    "lr": "learning rate",
    "size": "side, in pixels, of the square the network sees",
    "max_side": "longer side",
    "batch_size": "never changes the answer",
    "preview_every": "steps between two previews",
    "seed": "same seed",
}


def fields_of(model: type[BaseModel], where: str):
    """(path, name, FieldInfo, enum values) of every field, nested models included."""
    for name, info in model.model_fields.items():
        values = []
        for arg in _flatten(info.annotation):
            if typing.get_origin(arg) is typing.Literal:
                values += [v for v in typing.get_args(arg) if isinstance(v, str)]
            elif isinstance(arg, type) and issubclass(arg, BaseModel):
                yield from fields_of(arg, f"{where}.{name}")
        yield f"{where}.{name}", name, info, values


def _flatten(annotation):
    stack, found = [annotation], []
    while stack:
        arg = stack.pop()
        found.append(arg)
        if typing.get_origin(arg) is not typing.Literal:
            stack.extend(typing.get_args(arg))
    return found


def every_field():
    for method in all_methods():
        yield from fields_of(method.params, method.name)


def test_no_method_names_a_concept_another_way():
    replaced = {old: new for new, olds in SYNONYMS.items() for old in olds}
    wrong = [f"{where}: say {replaced[name]!r}" for where, name, _, _ in every_field()
             if name in replaced and not (name == "method" and where.startswith("evaluate_attribution"))]
    widths = [where for where, name, _, _ in every_field() if name == "width"]
    heights = {where.rsplit(".", 1)[0] for where, name, _, _ in every_field() if name == "height"}
    wrong += [f"{where}: 'width' is pixels, beside 'height'" for where in widths if where.rsplit(".", 1)[0] not in heights]
    assert not wrong, wrong


def test_a_concept_states_its_units_in_one_wording():
    wrong = [f"{where}: its description should say {text!r}" for where, name, info, _ in every_field()
             for concept, text in UNITS.items() if name == concept and text not in (info.description or "")]
    assert not wrong, wrong


def test_shared_concepts_are_defined_once():
    """seed, fit and preview_every read the same everywhere: they come from engine.params."""
    for concept in ("seed", "fit", "preview_every"):
        descriptions = {info.description for _, name, info, _ in every_field() if name == concept}
        assert len(descriptions) == 1, (concept, descriptions)


def test_public_names_are_american_snake_case():
    names = [(where, name) for where, name, _, _ in every_field()]
    names += [(f"{where} value", value) for where, _, _, values in every_field() for value in values]
    names += [(f"method {m.name}", m.name) for m in all_methods()] + [(f"category of {m.name}", m.category) for m in all_methods()]
    wrong = [f"{where}: {name!r}" for where, name in names if set(name.lower().split("_")) & BRITISH or "-" in name]
    assert not wrong, wrong


def test_paths_are_snake_case_and_american():
    paths = create_app(make_settings()).openapi()["paths"]
    segments = {segment for path in paths for segment in path.split("/") if segment and not segment.startswith("{")}
    wrong = sorted(s for s in segments if "-" in s or set(s.split("_")) & BRITISH)
    assert not wrong, wrong


def test_the_vocabulary_catches_a_drifting_method():
    """The checks above can fail: a method that says ``iterations`` and ``normalise`` is caught by them."""
    from pydantic import Field

    from engine.params import Params

    class Drifting(Params):
        iterations: int = Field(3, description="rounds")
        normalise: typing.Literal["per_channel"] = "per_channel"

    found = [name for _, name, _, _ in fields_of(Drifting, "drifting")]
    replaced = {old for olds in SYNONYMS.values() for old in olds}
    assert set(found) & replaced == {"iterations", "normalise"}
    assert set("normalise".split("_")) & BRITISH
