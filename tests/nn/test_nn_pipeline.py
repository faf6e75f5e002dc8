"""Composition: the nn estimators inside sklearn Pipeline and GridSearchCV."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from galaxysim.neighbors import NearestGalaxy
from galaxysim.nn import AEEncoder, CNNScorer
from galaxysim.pipeline import make_search_pipeline
from galaxysim.utils._image import center_crop


def _crop16():
    return FunctionTransformer(center_crop, kw_args={"size": 16})


@pytest.fixture(scope="module")
def big(blobs_big):
    X, y = blobs_big
    # 32x32 frames with the galaxy in the centre 16x16, as a crop step expects
    X32 = np.zeros((len(X), 32, 32, 3), np.uint8)
    X32[:, 8:24, 8:24] = X
    return X32, y


def test_pipeline_crop_cnn_and_pickle(big):
    X, y = big
    pipe = make_pipeline(_crop16(), CNNScorer(max_epochs=2, batch_size=32, random_state=0))
    pipe.fit(X, y)
    assert pipe.predict(X[:4]).shape == (4,)
    assert pipe.transform(X[:4]).shape == (4, 3)
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again.transform(X), pipe.transform(X))


def test_grid_search_over_nn_hyperparameter(big):
    X, y = big
    pipe = make_pipeline(_crop16(), CNNScorer(max_epochs=1, batch_size=32, random_state=0))
    search = GridSearchCV(pipe, {"cnnscorer__lr": [1e-3, 3e-3]}, cv=2).fit(X, y)
    assert search.best_params_["cnnscorer__lr"] in (1e-3, 3e-3)
    assert 0 <= search.best_score_ <= 1


def test_grid_search_autoencoder_latent_dim(big):
    X, y = big

    def neg_recon_error(est, X, y=None):
        return -est[-1].reconstruction_error(est[:-1].transform(X)).mean()

    pipe = make_pipeline(_crop16(), AEEncoder(max_epochs=1, batch_size=32, random_state=0))
    search = GridSearchCV(
        pipe, {"aeencoder__latent_dim": [4, 8]}, cv=2, scoring=neg_recon_error
    ).fit(X)
    assert (
        search.best_estimator_.transform(X[:3]).shape[1]
        == search.best_params_["aeencoder__latent_dim"]
    )


def test_latents_feed_a_nearest_neighbour_search(big):
    X, y = big
    pipe = make_pipeline(_crop16(), AEEncoder(latent_dim=8, max_epochs=1, random_state=0))
    Z = pipe.fit_transform(X)
    assert Z.dtype == np.float32 and Z.flags.c_contiguous
    nn = NearestGalaxy(n_neighbors=3).fit(Z)
    _, idx = nn.kneighbors(pipe.transform(X[:2]), n_neighbors=3)
    assert idx.shape == (2, 3)


def test_orientation_invariant_search_pipeline(big):
    # the user guide's morphology search: invariant codes, standardised, then ranked
    X, y = big
    search = make_search_pipeline(
        _crop16(),
        AEEncoder(latent_dim=8, orientation_invariant=True, max_epochs=1, random_state=0),
        StandardScaler(),
        NearestGalaxy(n_neighbors=5),
    ).fit(X, y)
    dist, idx = search.kneighbors(X[:3])
    assert idx.shape == (3, 5) and (idx[:, 0] == [0, 1, 2]).all()
    dist_rot, _ = search.kneighbors(np.rot90(X[:3], 1, axes=(1, 2)))
    np.testing.assert_allclose(dist_rot, dist, rtol=1e-4, atol=1e-4)
    assert search.score(X, y) > 0
