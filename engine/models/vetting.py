"""Vetting a model file: everything registration learns about it, checked and measured, in one pure function.

:func:`vet` takes the bytes and metadata a client sent and returns a
:class:`Vetted`, or raises :class:`~engine.errors.ModelRejected` naming why:

1. the format: pickles and TorchScript are refused unread; a ``.pt2`` archive
   is refused if it inflates past the size cap, then read (no pickle, every
   node allowlisted, guard code dropped) and translated to ONNX;
2. the ONNX graph (the file, or the translation) is checked statically: node
   cap, external data, operators, the ONNX checker, and every shape inferred
   at the native size and a smaller and a larger one (:func:`probe_sizes`),
   batch 1 and 2, under a byte cap (:mod:`engine.models.onnx_checks`);
3. converted (onnx2torch) and run: the validating passes at the native size
   (:func:`engine.models.registered.validate_network`), then one pass at the
   other sizes. A model that runs at its native size only is ``fixed``;
4. every capability the methods need is prepared for real and its refusal
   kept as the reason; the layer catalogue at the native size is recorded,
   so cost estimates never need the weights.

It runs a stranger's network, so it must run where that is harmless:
:mod:`worker.model_vetting` runs it in a child process with memory and time caps.
"""

from types import MappingProxyType

import numpy as np
import torch

from engine.attribution.incremental import IncrementalOcclusion
from engine.errors import ModelRejected
from engine.models.folding import folded
from engine.models.formats import FILE_FORMATS, ModelFormat, onnx_network, read_onnx, sniff_format
from engine.models.onnx_checks import check_shapes
from engine.models.registered import ModelMetadata, RegistrationLimits, spec_from_metadata, validate_network
from engine.models.vetted import Vetted
from engine.models.wrapper import ConvLensModel
from engine.models.zoo import Size, Sizes
from engine.relu_rules import build_rule_copy

PROBE_FLOOR = 32  # below this, most CNNs' stride-32 downsampling leaves nothing
PROBE_CEILING = 1024  # the largest side metadata and describe accept
PROBE_SHORT_SIDES = (32, 64, 128, 256, 512)  # the sizes methods default to lie between these


def probe_sizes(native: Size) -> list[Size]:
    """The native size, half and double it, and the picture scaled to each of PROBE_SHORT_SIDES, smallest first.

    The methods run at sizes between these: describe and the layer methods at a
    size the client asks for, evaluation at 128 px, class visualisation, inversion
    and texture at 224-256, style transfer at 512, class visualisation's jitter
    and scale a little around the native size. Sides stay within 32..1024 px.
    """
    short = min(native)
    scales = {0.5, 2.0, *(side / short for side in PROBE_SHORT_SIDES)}
    found = {tuple(native)}
    for scale in scales:
        size = tuple(round(side * scale) for side in native)
        if all(PROBE_FLOOR <= side <= PROBE_CEILING for side in size):
            found.add(size)
    return sorted(found)


def measured_sizes(native: Size, refusals: dict[Size, str | None]) -> Sizes:
    """The range around ``native`` in which every probed size ran (``refusals[size]`` is None)."""
    probed = sorted(refusals)
    at = probed.index(tuple(native))
    low = high = at
    while low > 0 and refusals[probed[low - 1]] is None:
        low -= 1
    while high < len(probed) - 1 and refusals[probed[high + 1]] is None:
        high += 1
    return Sizes(tuple(native), probed[low], probed[high])


def vet(data: bytes, metadata: str | bytes | dict, limits: RegistrationLimits) -> Vetted:
    """Check, convert, run and measure the model file ``data`` as ``metadata`` declares it (ModelRejected if it fails)."""
    meta = ModelMetadata.parse(metadata)
    fmt = _format(data, meta.format)
    onnx_data = FILE_FORMATS[fmt].to_onnx(data, limits.max_archive_bytes)
    native, probed = tuple(meta.input_size), probe_sizes(meta.input_size)
    static = check_shapes(read_onnx(onnx_data, limits.max_nodes), [native, *(size for size in probed if size != native)], limits.max_tensor_bytes)
    net = onnx_network(onnx_data)
    meta = validate_network(net, meta, fmt, limits)
    model = ConvLensModel(spec_from_metadata(meta, fmt, lambda: net, None, ""), net)
    expected = _output_shape(model, native)
    reasons = {size: None if size == native else static[size] or _runs_at(model, size, expected) for size in static}
    sizes = measured_sizes(native, reasons)
    catalogue = model.catalogue()
    return Vetted(
        format=fmt, onnx=onnx_data, metadata=meta.model_dump(mode="json"), parameters=sum(p.numel() for p in net.parameters()),
        sizes=sizes, capabilities=MappingProxyType(_capabilities(model, catalogue, sizes, reasons)), catalogue=catalogue,
    )


def _format(data: bytes, declared: ModelFormat | None) -> ModelFormat:
    """The file's format, always sniffed (so pickles and TorchScript are refused whatever is declared)."""
    found = sniff_format(data)
    if declared is not None and declared != found:
        raise ModelRejected("not_a_model", f"the metadata declares format {declared!r}, but the file is {'a torch.export archive' if found == 'torch_export' else 'not a zip archive, as a .pt2 is'}")
    return found


def _output_shape(model: ConvLensModel, size: Size) -> tuple[int, ...]:
    with torch.inference_mode():
        return tuple(model(torch.zeros(1, 3, *size)).shape)


def _runs_at(model: ConvLensModel, size: Size, expected: tuple[int, ...]) -> str | None:
    """None when one picture of ``size`` runs and gives the ``expected`` (native) output shape, else why not."""
    try:
        found = _output_shape(model, size)
    except Exception as exc:  # the model's own failure at this size, whatever it raises
        return f"at {size[0]}x{size[1]} the model fails: {type(exc).__name__}: {str(exc)[:300]}"
    if found != expected:
        return f"at {size[0]}x{size[1]} the model outputs {found} instead of {expected}"
    return None


def _capabilities(model: ConvLensModel, catalogue, sizes: Sizes, reasons: dict[Size, str | None]) -> dict[str, str | None]:
    refusals = "; ".join(reason for reason in reasons.values() if reason)
    return {
        "layers": None if catalogue else "no layer of the network outputs a feature map or vector to hooks",
        "relu_rules": _probe(lambda: _relu_rules_run(model)),
        "incremental_occlusion": _probe(lambda: _occlusion_plan_agrees(model)),
        "resizable": None if not sizes.fixed else f"the model runs at its native size {sizes.native[0]}x{sizes.native[1]} only ({refusals})",
    }


def _probe(prepare) -> str | None:
    """None when ``prepare()`` succeeds, else its refusal as the reason."""
    try:
        prepare()
    except Exception as exc:  # a capability that cannot be prepared, for whatever reason, is not offered
        return str(exc) or type(exc).__name__
    return None


def _relu_rules_run(model: ConvLensModel) -> None:
    """Guided backprop's ReLU-rule copy builds and gives an input gradient (as the method prepares it)."""
    copy = build_rule_copy(folded(model), "guided")
    x = torch.zeros(1, 3, *model.input_size, requires_grad=True)
    (grad,) = torch.autograd.grad(copy.module(x).float().sum(), x)
    if grad.shape != x.shape:
        raise RuntimeError(f"the rule copy's input gradient has shape {tuple(grad.shape)}")


def _occlusion_plan_agrees(model: ConvLensModel) -> None:
    """The receptive-field plan builds for two corner windows and recomputes what brute force computes."""
    height, width = model.input_size
    side = max(1, min(height, width) // 4)
    windows = [(0, side, 0, side), (height - side, height, width - side, width)]
    net = folded(model)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    fill = model.mean_colour()
    with torch.inference_mode():
        fast = IncrementalOcclusion(net, x, windows).outputs(np.arange(len(windows)), fill).float()
        batch = x.repeat(len(windows), 1, 1, 1)
        for i, (y0, y1, x0, x1) in enumerate(windows):
            batch[i, :, y0:y1, x0:x1] = fill[0]
        brute = net(batch).float()
    if not torch.allclose(fast, brute, rtol=1e-3, atol=1e-4 * max(1.0, float(brute.abs().max()))):
        raise RuntimeError(f"the receptive-field recomputation differs from brute force by {float((fast - brute).abs().max()):.3g}")
