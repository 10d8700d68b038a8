"""Classify: top-k ImageNet labels with softmax probabilities."""

import torch

from engine import params as p
from engine.capabilities import CLASSIFIER
from engine.imaging import to_tensor
from engine.models import ConvLensModel
from engine.params import Fitted
from engine.cost import Cost, forward_cost
from engine.models.profile import ModelProfile
from engine.registry import Batching, method
from engine.result import Result


class ClassifyParams(Fitted):
    top_k: int = p.top_k(5, 1000, "classes to return, most probable first")


def classify_cost(model: ModelProfile, params: ClassifyParams, images: int) -> Cost:
    """One forward pass."""
    return forward_cost(model, model.input_size, 1, 1, "")


def classify_batch(model: ConvLensModel, calls: list[tuple[dict, ClassifyParams]]) -> list[Result]:
    """The top classes of several pictures in one forward pass."""
    images = [model.fit_input(inputs["image"], params.fit) for inputs, params in calls]
    with torch.inference_mode():
        probs = model(torch.cat([to_tensor(image, model.device) for image in images])).softmax(-1)
    return [Result(images={"input": image}, data={"top": model.top_classes(row, params.top_k)}, main="input")
            for image, row, (_inputs, params) in zip(images, probs, calls)]


@method(
    "classify",
    summary="Top-k ImageNet classes with probabilities",
    cost=classify_cost,
    category="inspect",
    params=ClassifyParams,
    requires=(CLASSIFIER,),
    queue="cpu",
    batching=Batching(key=lambda params: (), run=classify_batch),
)
def classify(model: ConvLensModel, inputs, params: ClassifyParams, progress) -> Result:
    return classify_batch(model, [(inputs, params)])[0]
