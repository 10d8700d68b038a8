"""JSON of untyped bodies: read from a client's text with the parser's limits, written with non-finite floats
(a method's NaN loss) as null, as pydantic does."""

import json
from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse


def read_json(text: str | bytes) -> Any:
    """A client's JSON text -> its value, parsed as the typed routes parse theirs (pydantic's parser).

    Anything unreadable raises ValueError with the reason: bad syntax, nesting past the parser's
    recursion limit (:func:`json.loads` raises RecursionError instead, or nests deeper than what
    reads the value next can follow), a lone UTF-16 surrogate (a string no UTF-8 answer can echo), bytes
    that are not text. Bytes are decoded as :func:`json.loads` decodes them: UTF-8 (a BOM ignored), UTF-16 or UTF-32.
    """
    if isinstance(text, bytes):
        text = text.decode(json.detect_encoding(text))  # UnicodeDecodeError is a ValueError
    return pydantic_core.from_json(text)


def finite_json(content: Any) -> bytes:
    """Compact JSON; NaN and infinities become null (JSON has neither; browsers' JSON.parse refuses them)."""
    return pydantic_core.to_json(content, inf_nan_mode="null")


class FiniteJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return finite_json(content)
