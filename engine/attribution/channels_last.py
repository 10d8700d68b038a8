"""A cached copy of a network whose weights and activations are laid out channels-last.

Convolutions on the CPU (oneDNN) and on GPUs run faster on NHWC tensors; the
numbers are the same up to float rounding (about 1e-7 of a saliency map's
peak; up to 4e-4 where the rounding flips a ReLU6 gate, as on chelsea
stretched to 224 px on an AVX2 CPU). The copy holds its own weight tensors (made once per model; zoo
weights never change) and nothing is written to the caller's model.
"""

import copy
import weakref
from typing import Callable

import torch

from engine.concurrency import build_once
from engine.models import ConvLensModel

_CACHE: "weakref.WeakKeyDictionary[ConvLensModel, torch.nn.Module]" = weakref.WeakKeyDictionary()


def channels_last_forward(model: ConvLensModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """``model``'s forward pass, computed on its channels-last copy."""
    net = build_once(_CACHE, model, lambda: copy.deepcopy(model.net).to(memory_format=torch.channels_last))
    return lambda x: net(model.normalize(x).contiguous(memory_format=torch.channels_last))
