"""The one result shape every attribution method returns, drawn in one place.

``arrays["map"]``: the raw float32 H x W map (never rescaled); ``images["heatmap"]``:
the map scaled for display and coloured; ``images["overlay"]``: the heatmap over
the input picture. Maps are drawn as the papers and Captum's
``visualize_image_attr`` draw them: the top ``outlier_percentile``% of pixels
clipped so a few outliers do not turn the rest dark, and signed maps (sign
``all``) scaled symmetrically about zero in a diverging colour map whose
centre colour is zero. The main picture is the heatmap (a sparse gradient map
vanishes in an overlay); dense, coarse maps (Grad-CAM, occlusion) pick the overlay.
``data`` names the model, method, layer, target, sign, normalisation, colormap,
the display range and timings.
"""

import numpy as np
import torch
from PIL import Image

from engine.attribution.params import AttributionParams
from engine.imaging import colorize, normalize_map, overlay, to_image
from engine.models import ConvLensModel
from engine.result import Result

GRADIENT_CONTRAST = 0.15  # the RGB gradient picture spans +-1/(2*0.15) = 3.3 standard deviations


def display_map(values: np.ndarray, params: AttributionParams, signed: bool) -> tuple[np.ndarray, str, str, list[float]]:
    """(map scaled to [0, 1] for colouring, normalisation used, colormap used, the raw values shown at 0 and 1)."""
    mode = "percentile" if params.normalization == "auto" else params.normalization
    colormap = ("coolwarm" if signed else "jet") if params.colormap == "auto" else params.colormap
    if mode != "percentile":
        scaled = normalize_map(values, mode)
        low, high = {"minmax": (values.min(), values.max()), "none": (0.0, 1.0)}.get(mode, (0.0, np.abs(values).max()))
        return scaled, mode, colormap, [float(low), float(high)]
    if signed:
        bound = float(np.percentile(np.abs(values), 100 - params.outlier_percentile))
        scaled = 0.5 + 0.5 * np.clip(values / bound, -1, 1) if bound > 0 else np.full_like(values, 0.5)
        return scaled.astype(np.float32), mode, colormap, [-bound, bound]
    low = float(min(values.min(), 0.0))
    high = float(np.percentile(values, 100 - params.outlier_percentile))
    scaled = np.clip((values - low) / (high - low), 0, 1) if high > low else np.zeros_like(values)
    return scaled.astype(np.float32), mode, colormap, [low, high]


def gradient_picture(grad: torch.Tensor) -> Image.Image:
    """A (3, H, W) input gradient as an RGB picture: centred, divided by its std, mid-grey at 0
    (the way Springenberg et al. 2015 show guided backprop and deconvnet reconstructions)."""
    std = float(grad.std())
    if std == 0:
        return to_image(torch.full_like(grad, 0.5))
    return to_image(0.5 + GRADIENT_CONTRAST * (grad - grad.mean()) / std)


def attribution_result(
    model: ConvLensModel,
    method: str,
    image: Image.Image,
    values: np.ndarray,
    params: AttributionParams,
    target: dict,
    sign: str,
    timings: dict[str, float],
    layer: str | None = None,
    images: dict[str, Image.Image] | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    data: dict | None = None,
    main: str = "heatmap",
) -> Result:
    values = np.ascontiguousarray(values, dtype=np.float32)
    scaled, normalization, colormap, shown = display_map(values, params, signed=sign == "all")
    heatmap = colorize(scaled, colormap)
    result_data = {
        "model": model.spec.name,
        "method": method,
        "layer": layer,
        "target": target,
        "sign": sign,
        "normalization": normalization,
        "colormap": colormap,
        "map_range": [float(values.min()), float(values.max())],
        "display_range": shown,
        "timings": {name: round(ms, 3) for name, ms in timings.items()},
    }
    result_data.update(data or {})
    return Result(
        images={"input": image, "heatmap": heatmap, "overlay": overlay(image, heatmap, params.alpha), **(images or {})},
        arrays={"map": values, **(arrays or {})},
        data=result_data,
        main=main,
    )


def max_abs_over_channels(grad) -> np.ndarray:
    """(1, 3, H, W) gradient -> H x W map: max over RGB of |gradient| (Simonyan et al. 2014)."""
    return grad[0].abs().amax(0).detach().cpu().numpy()
