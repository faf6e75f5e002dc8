"""Image preprocessing: cropping, resizing, flattening, reframing of queries, and
re-imaging a query as the catalogue's survey would (:class:`SurveyImager`)."""

from galaxysim.preprocessing._survey import SurveyImager
from galaxysim.preprocessing._transformers import (
    CenterCrop,
    Crop64,
    PixelFlatten,
    Reframe,
    Resize,
)

__all__ = ["CenterCrop", "Crop64", "PixelFlatten", "Reframe", "Resize", "SurveyImager"]
