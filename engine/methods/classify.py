"""Classify: top-k ImageNet labels with softmax probabilities."""

import torch
from pydantic import BaseModel, Field

from engine.capabilities import CLASSIFIER
from engine.imaging import Fit, to_tensor
from engine.models import ConvLensModel
from engine.registry import method
from engine.result import Result


class ClassifyParams(BaseModel):
    top_k: int = Field(5, ge=1, le=1000, description="how many classes to return")
    fit: Fit | None = Field(
        None, description="how the picture is resized to the model's input size; default: the model's own evaluation resize (eval_fit in GET /v1/models)"
    )


@method(
    "classify",
    summary="Top-k ImageNet classes with probabilities",
    category="inspect",
    params=ClassifyParams,
    requires=(CLASSIFIER,),
    queue="cpu",
)
def classify(model: ConvLensModel, inputs, params: ClassifyParams, progress) -> Result:
    image = model.fit_input(inputs["image"], params.fit)
    with torch.inference_mode():
        probs = model(to_tensor(image, model.device)).softmax(-1)[0]
    values, indices = probs.topk(min(params.top_k, probs.numel()))
    top = [
        {"index": int(i), "label": model.labels[int(i)], "probability": float(p)}
        for p, i in zip(values.tolist(), indices.tolist())
    ]
    return Result(images={"input": image}, data={"top": top}, main="input")
