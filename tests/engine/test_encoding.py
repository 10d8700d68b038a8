"""Result -> PNG / .npy bytes round-trip exactly."""

import io

import numpy as np
import pytest
from PIL import Image

from engine.encoding import NPY, PNG, encode_artifact, encode_result, has_artifact
from engine.result import Result


@pytest.fixture
def result(astronaut) -> Result:
    return Result(
        images={
            "photo": astronaut.resize((48, 32)),
            "grey": Image.effect_noise((5, 7), 50),
            "clear": astronaut.resize((6, 4)).convert("RGBA"),
        },
        arrays={"map": np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), "ids": np.arange(3, dtype=np.int64)},
        data={"note": "ok"},
        main="photo",
    )


def test_every_artifact_round_trips_exactly(result):
    artifacts = {artifact.name: artifact for artifact in encode_result(result)}
    assert list(artifacts) == ["photo", "grey", "clear", "map", "ids"]
    for name, image in result.images.items():
        decoded = Image.open(io.BytesIO(artifacts[name].content))
        assert artifacts[name].media_type == PNG and decoded.format == "PNG"
        assert np.array_equal(np.asarray(decoded), np.asarray(image))
    for name, array in result.arrays.items():
        decoded = np.load(io.BytesIO(artifacts[name].content), allow_pickle=False)
        assert artifacts[name].media_type == NPY
        assert decoded.dtype == array.dtype and np.array_equal(decoded, array)


def test_descriptions_carry_sizes_shapes_and_dtypes(result):
    assert encode_artifact(result, "photo").describe() == {
        "name": "photo", "kind": "image", "media_type": PNG, "width": 48, "height": 32,
    }
    assert encode_artifact(result, "map").describe() == {
        "name": "map", "kind": "array", "media_type": NPY, "shape": [3, 4], "dtype": "<f4",
    }


def test_fast_and_small_png_hold_the_same_pixels(result):
    fast, small = encode_artifact(result, "photo", fast=True), encode_artifact(result, "photo", fast=False)
    assert len(small.content) <= len(fast.content)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(fast.content))), np.asarray(Image.open(io.BytesIO(small.content))))


def test_unknown_artifact(result):
    assert has_artifact(result, "map") and not has_artifact(result, "nope")
    with pytest.raises(KeyError):
        encode_artifact(result, "nope")


def test_object_arrays_are_refused():
    with pytest.raises(ValueError):
        encode_result(Result(arrays={"bad": np.array([{"a": 1}], dtype=object)}))


def test_other_modes_are_converted(astronaut):
    palette = astronaut.resize((8, 8)).convert("P")
    decoded = Image.open(io.BytesIO(encode_artifact(Result(images={"p": palette}), "p").content))
    assert decoded.mode == "RGB" and np.array_equal(np.asarray(decoded), np.asarray(palette.convert("RGB")))
