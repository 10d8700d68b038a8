"""A result holding NaN or infinities is refused with one clear error, wherever it came from."""

import numpy as np
import pytest
from PIL import Image

from engine.errors import NonFiniteResult
from engine.models import register_model
from engine.models.registered import ModelMetadata, spec_from_metadata
from engine.models.zoo import MODELS
from engine.result import Result
from engine.run import run_method
from tests.model_files import BrightIsNaN, metadata


@pytest.fixture
def nan_net():
    meta = ModelMetadata.parse(metadata("bright-is-nan", (32, 32), [f"c{i}" for i in range(4)]))
    spec = register_model(spec_from_metadata(meta, "onnx", BrightIsNaN, None, "test"))
    yield spec.name
    MODELS.remove(spec.name)


def test_the_first_non_finite_value_is_named():
    assert Result(data={"top": [{"p": 0.5}, {"p": float("nan")}]}).first_non_finite() == "data.top[1].p"
    assert Result(data={"loss": np.float32("inf")}).first_non_finite() == "data.loss"
    assert Result(arrays={"map": np.array([0.0, np.nan], dtype=np.float32)}).first_non_finite() == "arrays.map"
    assert Result(data={"top": [{"p": 0.5}], "name": "x"}, arrays={"ids": np.arange(3)}).first_non_finite() is None


@pytest.mark.parametrize("method", ["classify", "saliency", "occlusion"])
def test_a_model_with_nan_outputs_gets_a_clear_error_and_finite_ones_an_answer(nan_net, method):
    params = {"window": 16, "stride": 16} if method == "occlusion" else {}
    with pytest.raises(NonFiniteResult, match="produced NaN or infinite numbers"):
        run_method(method, nan_net, {"image": Image.new("RGB", (32, 32), "white")}, params, device="cpu")
    result = run_method(method, nan_net, {"image": Image.new("RGB", (32, 32), "black")}, params, device="cpu")
    assert result.first_non_finite() is None
