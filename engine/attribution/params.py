"""Params every attribution method shares."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.imaging import Colormap, Fit

Normalization = Literal["auto", "percentile", "minmax", "abs_max", "none"]


class AttributionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target_class: int | str | None = Field(
        None, description="class to explain, as an index or a label; default: the predicted top-1 class"
    )
    fit: Fit | None = Field(
        None, description="how the picture is resized to the model's input size; default: the model's own evaluation resize (eval_fit in GET /v1/models)"
    )
    normalization: Normalization = Field(
        "auto",
        description="how the map is scaled for the heatmap: percentile (the top `outlier_percentile`% of pixels "
        "clipped, as Captum's visualize_image_attr; signed maps symmetric about 0), minmax, abs_max (keeps 0 at 0), "
        "none (raw values clipped to [0, 1]; keeps maps comparable across calls); auto = percentile",
    )
    outlier_percentile: float = Field(2.0, ge=0.0, le=50.0, description="percent of the largest |values| clipped by percentile scaling")
    colormap: Colormap | Literal["auto"] = Field(
        "auto", description="colormap of the heatmap; auto: jet for unsigned maps, the diverging coolwarm (0 at its centre) for signed ones"
    )
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="opacity of the heatmap in the overlay")
