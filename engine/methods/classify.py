"""Classify: top-k ImageNet labels with softmax probabilities."""

import torch

from engine import params as p
from engine.capabilities import CLASSIFIER
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.params import Fitted
from engine.cost import Cost, forward_cost
from engine.models.profile import ModelProfile
from engine.registry import method
from engine.result import Result


class ClassifyParams(Fitted):
    top_k: int = p.top_k(5, 1000, "classes to return, most probable first")


def classify_cost(model: ModelProfile, params: ClassifyParams, images: int) -> Cost:
    """One forward pass."""
    return forward_cost(model, model.input_size, 1, 1, "")

@method(
    "classify",
    summary="Top-k ImageNet classes with probabilities",
    cost=classify_cost,
    category="inspect",
    params=ClassifyParams,
    requires=(CLASSIFIER,),
    queue="cpu",
)
def classify(model: ConvLensModel, inputs, params: ClassifyParams, progress) -> Result:
    image = model.fit_input(inputs["image"], params.fit)
    with torch.inference_mode():
        probs = model(to_tensor(image, model.device)).softmax(-1)[0]
    return Result(images={"input": image}, data={"top": model.top_classes(probs, params.top_k)}, main="input")
