"""Nearest-galaxy search and the distance kernels; block-wise search of Dask arrays (an
optional extra, imported when used)."""

from galaxysim.neighbors._dask import blockwise_topk, embed_blocks
from galaxysim.neighbors._kernels import METRICS, pairwise_distances
from galaxysim.neighbors._nearest import NearestGalaxy

__all__ = [
    "METRICS",
    "NearestGalaxy",
    "blockwise_topk",
    "embed_blocks",
    "pairwise_distances",
]
