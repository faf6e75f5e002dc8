"""The shared image-estimator contract (galaxysim.utils.estimator_checks) on the nn estimators."""

import pytest

from galaxysim.nn import AEEncoder, CNNScorer, VAEEncoder
from galaxysim.utils.estimator_checks import IMAGE_CHECKS, check_image_estimator

TINY = {"max_epochs": 1, "batch_size": 16, "random_state": 0, "n_jobs": 1}


@pytest.mark.parametrize(
    "estimator",
    [CNNScorer(**TINY), AEEncoder(latent_dim=4, **TINY), VAEEncoder(latent_dim=4, **TINY)],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("check", IMAGE_CHECKS, ids=lambda c: c.__name__)
def test_image_estimator_contract(estimator, check, blobs):
    X, y = blobs
    supervised = isinstance(estimator, CNNScorer)
    # float32 inference may differ in the last bits with the batch composition
    check_image_estimator(estimator, X, y if supervised else None, atol=1e-5, checks=[check])
