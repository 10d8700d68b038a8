"""A result's artifact names are unique: a picture and an array never share one."""

import numpy as np
import pytest
from PIL import Image

from engine.result import Result


def test_a_picture_and_an_array_of_one_name_are_refused():
    with pytest.raises(ValueError, match="gradient"):
        Result(images={"gradient": Image.new("RGB", (2, 2))}, arrays={"gradient": np.zeros(2)})


def test_distinct_names_are_kept():
    result = Result(images={"gradient": Image.new("RGB", (2, 2))}, arrays={"input_gradient": np.zeros(2)})
    assert set(result.images) | set(result.arrays) == {"gradient", "input_gradient"}
