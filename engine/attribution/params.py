"""Params every attribution method shares: the class it explains, the fit, and how its map is drawn."""

from typing import Literal

from pydantic import Field

from engine.imaging import Colormap
from engine.params import RARE, ClassTargeted, Fitted

Normalization = Literal["auto", "percentile", "minmax", "abs_max", "none"]


class AttributionParams(ClassTargeted, Fitted):
    normalization: Normalization = Field(
        "auto",
        description="how the map is scaled for the heatmap: percentile (the top `outlier_percentile`% of pixels "
        "clipped, as Captum's visualize_image_attr; signed maps symmetric about 0), minmax, abs_max (keeps 0 at 0), "
        "none (raw values clipped to [0, 1]; keeps maps comparable across calls); auto = percentile",
    )
    outlier_percentile: float = Field(2.0, ge=0.0, le=50.0, description="percent of the largest |values| clipped by percentile scaling", json_schema_extra=RARE)
    colormap: Colormap | Literal["auto"] = Field(
        "auto", description="colormap of the heatmap; auto: jet for unsigned maps, the diverging coolwarm (0 at its center) for signed ones"
    )
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="opacity of the heatmap in the overlay", json_schema_extra=RARE)
