"""Nearest-galaxy search and the distance kernels; block-wise search of Dask arrays and
approximate search with faiss (optional extras, imported when used)."""

from galaxysim.neighbors._approximate import ApproximateIndex
from galaxysim.neighbors._dask import blockwise_topk, embed_blocks
from galaxysim.neighbors._kernels import METRICS, pairwise_distances
from galaxysim.neighbors._nearest import NearestGalaxy

__all__ = [
    "METRICS",
    "ApproximateIndex",
    "NearestGalaxy",
    "blockwise_topk",
    "embed_blocks",
    "pairwise_distances",
]
