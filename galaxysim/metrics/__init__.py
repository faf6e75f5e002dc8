"""Retrieval metrics and scorers."""

from galaxysim.metrics._retrieval import (
    mean_average_precision,
    precision_at_k,
    precision_at_k_per_class,
    retrieval_scorer,
)

__all__ = [
    "mean_average_precision",
    "precision_at_k",
    "precision_at_k_per_class",
    "retrieval_scorer",
]
