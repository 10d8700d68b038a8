"""What every synthesis method returns: the final image, its loss curve (JSON
and a plotted PNG) and the parameters used."""

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from engine.imaging import to_image
from engine.optim.loop import Rendered
from engine.result import Result


def plot_losses(losses: list[float], size: tuple[int, int] = (480, 240)) -> Image.Image:
    """A plain line plot of ``losses`` against step, with min/max labels."""
    width, height = size
    left, right, top, bottom = 56, 12, 12, 28
    picture = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(picture)
    draw.rectangle([left, top, width - right, height - bottom], outline=(160, 160, 160))
    finite = [v for v in losses if math.isfinite(v)]
    if len(finite) >= 1:
        low, high = min(finite), max(finite)
        span = (high - low) or 1.0
        count = max(len(losses) - 1, 1)
        points = [
            (left + (width - left - right) * i / count, top + (height - top - bottom) * (high - v) / span)
            for i, v in enumerate(losses)
            if math.isfinite(v)
        ]
        if len(points) > 1:
            draw.line(points, fill=(31, 119, 180), width=2)
        draw.text((4, top), f"{high:.3g}", fill="black")
        draw.text((4, height - bottom - 10), f"{low:.3g}", fill="black")
    draw.text((left, height - bottom + 8), f"step 1..{len(losses)}", fill="black")
    return picture


def synthesis_result(rendered: Rendered, data: dict[str, Any] | None = None, name: str = "image") -> Result:
    """Result with ``name`` (the final image), ``loss_curve`` (PNG) and the losses as data and array."""
    payload = {"steps": rendered.steps, "losses": rendered.losses, "final_loss": rendered.losses[-1] if rendered.losses else None}
    payload.update(data or {})
    return Result(
        images={name: to_image(rendered.image), "loss_curve": plot_losses(rendered.losses)},
        arrays={"losses": np.asarray(rendered.losses, dtype=np.float64)},
        data=payload,
        main=name,
    )
