"""The one result shape every attribution method returns, drawn in one place.

``arrays["map"]``: the raw float32 H x W map (before any normalisation);
``images["heatmap"]``: the map, normalised and coloured; ``images["overlay"]``:
the heatmap over the input picture (the main image). ``data`` names the model,
method, layer, target, sign convention, normalisation, colormap and timings.
"""

import numpy as np
from PIL import Image

from engine.attribution.params import AttributionParams
from engine.imaging import colorize, normalize_map, overlay
from engine.models import ConvLensModel
from engine.result import Result


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
    main: str = "overlay",
) -> Result:
    values = np.ascontiguousarray(values, dtype=np.float32)
    heatmap = colorize(normalize_map(values, params.normalization), params.colormap)
    result_data = {
        "model": model.spec.name,
        "method": method,
        "layer": layer,
        "target": target,
        "sign": sign,
        "normalization": params.normalization,
        "colormap": params.colormap,
        "map_range": [float(values.min()), float(values.max())],
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
