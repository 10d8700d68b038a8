"""Pydantic's validation errors as people read them: one line per field, never a union's trace.

A union's errors arrive once per member, each under a tag of that member
(``target_class.int``, ``target_class.str``); they become one line naming the
forms the field accepts and what was sent. Messages lose pydantic's
"Value error, " prefix.
"""

import re

from pydantic import ValidationError

_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_KINDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "none": "null"}


def readable_errors(errors: ValidationError | list[dict]) -> list[dict]:
    """``[{"loc": [...], "msg": ...}]``, one per field, in the order pydantic found them."""
    merged: dict[tuple, dict] = {}
    for error in errors.errors(include_url=False) if isinstance(errors, ValidationError) else errors:
        loc, tags = _field_path(error["loc"])
        entry = merged.setdefault(loc, {"loc": [str(part) for part in loc], "msgs": [], "tags": [], "input": error.get("input")})
        entry["tags"].extend(tags)
        entry["msgs"].append(error["msg"].removeprefix("Value error, "))
    return [{"loc": entry["loc"], "msg": _message(entry)} for entry in merged.values()]


def describe_errors(errors: ValidationError | list[dict], root: str) -> str:
    """``"steps: Input should be ...; neuron.1: Field required"`` (``root`` names an error of the whole object)."""
    return "; ".join(f"{'.'.join(error['loc']) or root}: {error['msg']}" for error in readable_errors(errors))


def _field_path(loc) -> tuple[tuple, list[str]]:
    """The path of real fields and indices; a union member's tag ends it (and is returned)."""
    path = []
    for part in loc:
        if isinstance(part, int) or (_FIELD.match(part) and part not in _KINDS):
            path.append(part)
        else:
            return tuple(path), [part]
    return tuple(path), []


def _message(entry: dict) -> str:
    if not entry["tags"]:
        return "; ".join(dict.fromkeys(entry["msgs"]))
    kinds = [_kind(tag) for tag in entry["tags"]]
    sent = repr(entry["input"])
    return f"expected {' or '.join(dict.fromkeys(kinds))}, got {sent if len(sent) <= 60 else sent[:57] + '...'}"


def _kind(tag: str) -> str:
    if tag in _KINDS:
        return _KINDS[tag]
    if tag.startswith(("list[", "tuple[", "set[")):
        return "a list"
    if tag.startswith("literal["):
        return "one of " + tag[len("literal["):-1]
    return "an object" if tag[:1].isupper() or tag.startswith("dict[") else "a valid value"
