"""Image preprocessing: cropping, resizing, flattening and reframing of queries."""

from galaxysim.preprocessing._transformers import (
    CenterCrop,
    Crop64,
    PixelFlatten,
    Reframe,
    Resize,
)

__all__ = ["CenterCrop", "Crop64", "PixelFlatten", "Reframe", "Resize"]
