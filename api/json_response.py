"""JSON of untyped bodies with non-finite floats (a method's NaN loss) written as null, as pydantic does."""

from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse


def finite_json(content: Any) -> bytes:
    """Compact JSON; NaN and infinities become null (JSON has neither; browsers' JSON.parse refuses them)."""
    return pydantic_core.to_json(content, inf_nan_mode="null")


class FiniteJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return finite_json(content)
