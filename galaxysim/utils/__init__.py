"""Shared helpers: input validation, progress bars, atomic file writes."""

from galaxysim.utils._io import atomic_write
from galaxysim.utils._progress import progress
from galaxysim.utils.validation import check_images

__all__ = ["atomic_write", "check_images", "progress"]
