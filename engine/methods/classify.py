"""Classify: top-k ImageNet labels with softmax probabilities."""

import torch
from pydantic import BaseModel, Field

from engine.imaging import Fit, fit_image, to_tensor
from engine.models import ConvLensModel
from engine.registry import method
from engine.result import Result


class ClassifyParams(BaseModel):
    top_k: int = Field(5, ge=1, le=1000, description="how many classes to return")
    fit: Fit = Field("stretch", description="how the picture is resized to the model's input size")


@method(
    "classify",
    summary="Top-k ImageNet classes with probabilities",
    category="inspect",
    params=ClassifyParams,
    needs_classifier=True,
    queue="cpu",
)
def classify(model: ConvLensModel, inputs, params: ClassifyParams, progress) -> Result:
    image = fit_image(inputs["image"], model.input_size, params.fit)
    with torch.inference_mode():
        probs = model(to_tensor(image, model.device)).softmax(-1)[0]
    values, indices = probs.topk(min(params.top_k, probs.numel()))
    top = [
        {"index": int(i), "label": model.labels[int(i)], "probability": float(p)}
        for p, i in zip(values.tolist(), indices.tolist())
    ]
    return Result(images={"input": image}, data={"top": top}, main="input")
