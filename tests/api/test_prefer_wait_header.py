"""Parsing RFC 7240 ``Prefer: wait=N``."""

import pytest

from api.job_wait import preferred_wait


@pytest.mark.parametrize("header, expected", [
    (None, None), ("", None), ("respond-async", None), ("wait=5", 5.0), ("respond-async, wait=10", 10.0),
    ("return=minimal; wait=2.5", 2.5), ('wait="3"', 3.0), ("WAIT = 4", 4.0), ("wait=600", 60.0), ("nowait=5", None),
])
def test_preferred_wait(header, expected):
    assert preferred_wait(header, longest=60.0) == expected
