from sklearn.utils.estimator_checks import parametrize_with_checks

from galaxysim.neighbors import NearestGalaxy


@parametrize_with_checks(
    [NearestGalaxy(n_neighbors=3), NearestGalaxy(n_neighbors=1, metric="maxabs")]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
