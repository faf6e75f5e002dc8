import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from galaxysim.neighbors import NearestGalaxy


@pytest.fixture(autouse=True)
def _run_array_api_check(monkeypatch):
    # sklearn runs its array-API input check (numpy namespace only, since NearestGalaxy
    # does not claim array-API support) only when this is set; nothing else reads it here
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")


@parametrize_with_checks(
    [
        NearestGalaxy(n_neighbors=3),
        NearestGalaxy(n_neighbors=1, metric="maxabs"),
        # approximate search of float rows; one faiss thread builds the same graph
        # every time (the estimator is tagged non-deterministic otherwise)
        NearestGalaxy(n_neighbors=3, algorithm="ivf", random_state=0),
        NearestGalaxy(n_neighbors=3, algorithm="hnsw", metric="cosine", n_jobs=1),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
