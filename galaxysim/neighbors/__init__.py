"""Nearest-galaxy search and the distance kernels."""

from galaxysim.neighbors._kernels import METRICS, pairwise_distances
from galaxysim.neighbors._nearest import NearestGalaxy

__all__ = ["METRICS", "NearestGalaxy", "pairwise_distances"]
