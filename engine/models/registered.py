"""Registered models: metadata validated into a :class:`ModelSpec` by running the network once.

A client sends a model file and its metadata (name, preprocessing, native
input size, labels, optional default layers). :func:`validate_network` loads
nothing itself: it takes the network read by :mod:`engine.models.formats`,
counts its parameters, runs one forward pass at the declared size (and one
with a batch of two, which occlusion, SmoothGrad and integrated gradients
need), checks a classifier's output is ``(1, len(labels))`` and resolves the
layers named in the metadata, filling in sensible defaults where none were
given. A model that fails any of it is refused now, never at first use.
"""

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Callable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from engine.errors import ModelRejected
from engine.imaging import Fit
from engine.models.formats import ModelFormat, timed
from engine.models.labels import IMAGENET_LABELS
from engine.models.layer_roles import feature_stages
from engine.models.wrapper import ConvLensModel, Preprocessing
from engine.models.zoo import ModelSpec
from engine.validation import describe_errors

if TYPE_CHECKING:
    from engine.models.vetted import Vetted

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
Side = Annotated[int, Field(ge=16, le=1024)]
# the network computes (pixel - mean) / std in float32: finite numbers, none that overflows it or divides by (almost) zero
Mean = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
Std = Annotated[float, Field(allow_inf_nan=False, ge=1e-6, le=1e6)]


class PreprocessingMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mean: tuple[Mean, Mean, Mean] = Field(description="per-channel mean, in the network's channel order and pixel range")
    std: tuple[Std, Std, Std] = Field(description="per-channel std, likewise")
    channel_order: Literal["RGB", "BGR"] = "RGB"
    pixel_range: Literal["0-1", "0-255"] = Field("0-1", description="the pixel values the network was trained on")

    def as_preprocessing(self) -> Preprocessing:
        return Preprocessing(self.mean, self.std, self.channel_order, 255.0 if self.pixel_range == "0-255" else 1.0)


class ModelMetadata(BaseModel):
    """What a client declares about a model file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="lower-case letters, digits, '_', '.', '-'")
    description: str = Field("", max_length=500)
    preprocessing: PreprocessingMetadata
    input_size: tuple[Side, Side] = Field(description="native (height, width)")
    labels: Literal["imagenet"] | list[Annotated[str, Field(max_length=200)]] | None = Field(
        None, max_length=100_000, description="class names in output order, 'imagenet' for the standard 1000, or null for a feature extractor"
    )
    gradcam_layer: str | None = Field(None, description="default layer for Grad-CAM and activations; default: the last layer with a convolution's feature-map layout")
    embedding_layer: str | None = Field(None, description="layer whose output is an image's feature vector; default: the one before the classifier")
    first_conv: str | None = Field(None, description="the convolution on the pixels; default: the first Conv2d with 3 input channels")
    format: ModelFormat | None = Field(None, description="the file's format; default: detected from the file")
    eval_fit: Fit = Field("stretch", description="how the model's own evaluation resizes a picture (stretch, crop, pad): "
                          "the default fit of classify and the attributions")

    @classmethod
    def parse(cls, raw: str | bytes | dict) -> "ModelMetadata":
        try:
            return cls.model_validate_json(raw) if isinstance(raw, (str, bytes)) else cls.model_validate(raw)
        except ValidationError as exc:
            raise ModelRejected("invalid_metadata", f"invalid model metadata: {describe_errors(exc, 'metadata')}") from None

    def label_tuple(self) -> tuple[str, ...] | None:
        if self.labels == "imagenet":
            return IMAGENET_LABELS
        return tuple(self.labels) if self.labels is not None else None


class StoredPreprocessing(PreprocessingMetadata):
    """Preprocessing as a stored record holds it: checked when it was registered, by the rules of that day."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class StoredMetadata(ModelMetadata):
    """A stored record's metadata, read without the bounds registration has added since (see :class:`PreprocessingMetadata`).

    A record is validated when it is registered; reading it again by newer rules would make a model registered under
    the older ones break its tenant's listing and its own deletion. Loosen here any bound added to registration later.
    """

    preprocessing: StoredPreprocessing


@dataclass(frozen=True)
class RegistrationLimits:
    max_parameters: int
    max_forward_seconds: float  # the first pass at the native size
    max_nodes: int  # ONNX nodes (a .pt2's translation included)
    max_tensor_bytes: int  # any intermediate tensor at any vetted size, batch 2
    max_archive_bytes: int  # a .pt2's members inflated, together


def spec_from_metadata(
    meta: ModelMetadata, fmt: ModelFormat, build: Callable[[], nn.Module], owner: str | None, content_hash: str,
    measured: "Vetted | None" = None,
) -> ModelSpec:
    """The spec of a registered model; ``measured`` (what vetting found) adds its sizes, capabilities and catalogue."""
    known = {}
    if measured is not None:
        lacks = {name: reason for name, reason in measured.capabilities.items() if reason}
        known = {"lacks": MappingProxyType(lacks), "sizes": measured.sizes, "layers": measured.catalogue}
    return ModelSpec(
        name=meta.name,
        description=meta.description or f"registered {fmt} model",
        build=build,
        preprocessing=meta.preprocessing.as_preprocessing(),
        input_size=tuple(meta.input_size),
        first_conv=meta.first_conv or "",
        labels=meta.label_tuple(),
        penultimate=meta.embedding_layer,
        default_layer=meta.gradcam_layer,
        eval_fit=meta.eval_fit,
        weights=f"registered {fmt} file, sha256 {content_hash}",
        format=fmt,
        owner=owner,
        content_hash=content_hash,
        **known,
    )


def validate_network(net: nn.Module, meta: ModelMetadata, fmt: ModelFormat, limits: RegistrationLimits) -> ModelMetadata:
    """Run ``net`` as ``meta`` declares; the metadata with every default layer resolved (ModelRejected if not)."""
    parameters = sum(p.numel() for p in net.parameters())
    if parameters == 0:
        raise ModelRejected("no_parameters", "the model has no parameters (weights): there is no learned network to explain")
    if parameters > limits.max_parameters:
        raise ModelRejected("too_many_parameters", f"the model has {parameters:,} parameters, over the limit of {limits.max_parameters:,}")
    model = ConvLensModel(spec_from_metadata(meta, fmt, lambda: net, None, ""), net)
    height, width = meta.input_size
    logits = timed(limits.max_forward_seconds, "the first forward pass", _forward, model, 1, height, width)
    if not torch.isfinite(logits).all():
        raise ModelRejected("non_finite_output", "the model's outputs for a plain (all-zero) picture hold NaN or infinite numbers")
    labels = meta.label_tuple()
    if labels is not None and tuple(logits.shape) != (1, len(labels)):
        raise ModelRejected(
            "output_mismatch",
            f"a classifier with {len(labels)} labels must output (1, {len(labels)}) for one picture; this model outputs {tuple(logits.shape)}",
        )
    batched = _forward(model, 2, height, width)
    if batched.shape[0] != 2 or not torch.allclose(batched[:1], logits, rtol=1e-3, atol=1e-4):
        raise ModelRejected("model_failed", "the model does not treat a batch of two pictures as two pictures; export it with a dynamic batch axis")
    return meta.model_copy(update=_resolved_layers(model, meta, labels))


def _forward(model: ConvLensModel, batch: int, height: int, width: int) -> torch.Tensor:
    try:
        with torch.inference_mode():
            out = model(torch.zeros(batch, 3, height, width))
    except Exception as exc:
        raise ModelRejected("model_failed", f"the model failed on a ({batch}, 3, {height}, {width}) input: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or out.dim() < 2:
        raise ModelRejected("model_failed", f"the model must return one tensor (batch, ...); it returned {type(out).__name__}")
    if not out.is_floating_point():  # scores: softmax, gradients and every method's maps need them
        raise ModelRejected("output_mismatch", f"the model must output floating-point scores or features; it outputs {str(out.dtype).removeprefix('torch.')}")
    return out.float()


def _resolved_layers(model: ConvLensModel, meta: ModelMetadata, labels) -> dict:
    catalogue = model.catalogue()
    shapes = {info.name: info.shape for info in catalogue}
    for field in ("gradcam_layer", "embedding_layer", "first_conv"):
        name = getattr(meta, field)
        if name is not None and name not in shapes:
            hint = ", ".join(list(shapes)[:6])
            raise ModelRejected("invalid_metadata", f"{field} {name!r} is not a layer of this model; e.g. {hint}")
    first_conv = meta.first_conv
    if first_conv is not None and not _is_pixel_conv(model.layers[first_conv]):
        raise ModelRejected("invalid_metadata", f"first_conv {first_conv!r} is not a convolution on 3 colour channels")
    if first_conv is None:
        first_conv = next((name for name, m in model.layers.items() if _is_pixel_conv(m)), None)
    if meta.gradcam_layer is not None and len(shapes[meta.gradcam_layer]) != 3:
        raise ModelRejected("invalid_metadata", f"gradcam_layer {meta.gradcam_layer!r} outputs {shapes[meta.gradcam_layer]}, not a feature map")
    stages = feature_stages(catalogue)  # feature maps in a convolution's layout (not channel-last ones)
    vectors = [info.name for info in catalogue[:-1] if len(info.shape) == 1 or info.shape[1:] == (1, 1)]
    return {
        "first_conv": first_conv,
        "gradcam_layer": meta.gradcam_layer or (stages[-1][-1].name if stages else None),
        "embedding_layer": meta.embedding_layer or (vectors[-1] if vectors and labels is not None else None),
    }


def _is_pixel_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.in_channels == 3

