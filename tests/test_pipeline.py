"""SearchPipeline: search methods route through the steps; GridSearchCV, clone, pickle."""

import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline

from galaxysim.datasets import make_galaxies
from galaxysim.metrics import precision_at_k, retrieval_scorer
from galaxysim.neighbors import NearestGalaxy
from galaxysim.pipeline import SearchPipeline, make_search_pipeline
from galaxysim.preprocessing import Crop64, PixelFlatten

SIZE = 48
X, Y = make_galaxies(300, image_size=SIZE, random_state=0)
Q, YQ = make_galaxies(6, image_size=SIZE, random_state=1)
BARRED = 5


def _pipe(**nearest):
    return make_search_pipeline(Crop64(size=32), PixelFlatten(), NearestGalaxy(**nearest))


@pytest.fixture(scope="module")
def fitted():
    return _pipe(n_neighbors=5).fit(X, Y)


def _by_hand(**nearest):
    """The same search done step by step."""
    crop, flat = Crop64(size=32).fit(X), PixelFlatten()
    rows = flat.fit_transform(crop.transform(X))
    nn = NearestGalaxy(**nearest).fit(rows, Y)
    return nn, lambda imgs: flat.transform(crop.transform(imgs))


def test_make_search_pipeline_names_and_type():
    pipe = _pipe()
    assert isinstance(pipe, SearchPipeline)
    assert isinstance(pipe, Pipeline)
    assert list(pipe.named_steps) == ["crop64", "pixelflatten", "nearestgalaxy"]


def test_kneighbors_equals_steps_by_hand(fitted):
    nn, prep = _by_hand(n_neighbors=5)
    dist, ind = fitted.kneighbors(Q)
    ref_dist, ref_ind = nn.kneighbors(prep(Q))
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    assert ind.shape == (6, 5)
    np.testing.assert_array_equal(
        fitted.kneighbors(Q, 3, return_distance=False), nn.kneighbors(prep(Q), 3, False)
    )


def test_kneighbors_without_query_searches_the_catalogue(fitted):
    nn, _ = _by_hand(n_neighbors=5)
    _, ind = fitted.kneighbors(None, 3)
    np.testing.assert_array_equal(ind, nn.kneighbors(None, 3)[1])
    assert not np.any(ind == np.arange(len(X))[:, None])  # never itself


def test_single_image_query(fitted):
    _, ind = fitted.kneighbors(Q[0])
    np.testing.assert_array_equal(ind, fitted.kneighbors(Q[:1])[1])


def test_within_routes_to_last_step(fitted):
    nn, prep = _by_hand(n_neighbors=5)
    dist, ind = fitted.kneighbors(Q, 4, within=[BARRED])
    np.testing.assert_array_equal(ind, nn.kneighbors(prep(Q), 4, within=[BARRED])[1])
    assert np.all(Y[ind] == BARRED)
    # the closest barred spirals are the barred spirals among a full ranking
    _, full = fitted.kneighbors(Q, len(X))
    expected = np.array([row[Y[row] == BARRED][:4] for row in full])
    np.testing.assert_array_equal(ind, expected)


def test_nearest_per_class_routes_through_steps(fitted):
    nn, prep = _by_hand(n_neighbors=5)
    dist, ind = fitted.nearest_per_class(Q)
    ref_dist, ref_ind = nn.nearest_per_class(prep(Q))
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_array_equal(dist, ref_dist)
    assert ind.shape == (6, 10)
    np.testing.assert_array_equal(Y[ind], np.tile(np.arange(10), (6, 1)))
    # each is the nearest of its label
    for c in range(10):
        np.testing.assert_array_equal(ind[:, c], fitted.kneighbors(Q, 1, within=c)[1][:, 0])


def test_catalogue_labels_and_predict(fitted):
    np.testing.assert_array_equal(fitted.catalogue_labels(), Y)
    nn, prep = _by_hand(n_neighbors=5)
    np.testing.assert_array_equal(fitted.predict(Q), nn.predict(prep(Q)))


def test_query_of_another_size_is_cropped():
    big, _ = make_galaxies(2, image_size=64, random_state=3)
    pipe = _pipe(n_neighbors=2).fit(X, Y)
    assert pipe.kneighbors(big)[1].shape == (2, 2)


def test_query_smaller_than_crop_is_a_clear_error(fitted):
    with pytest.raises(ValueError, match="smaller than the required 32x32.*Resize"):
        fitted.kneighbors(np.zeros((1, 20, 20, 3), np.uint8))


def test_default_score_is_precision_at_k(fitted):
    nn, prep = _by_hand(n_neighbors=5)
    ind = nn.kneighbors(prep(Q), 5, return_distance=False)
    assert fitted.score(Q, YQ) == pytest.approx(precision_at_k(YQ, Y[ind]))


# ------------------------------------------------------------------ GridSearchCV
GRID = {"nearestgalaxy__metric": ["mse", "maxabs", "cosine"], "crop64__size": [24, 32]}


def test_grid_search_default_scoring():
    search = GridSearchCV(_pipe(n_neighbors=5), GRID, cv=3)
    search.fit(X, Y)
    assert set(search.best_params_) == set(GRID)
    assert search.best_params_["nearestgalaxy__metric"] in GRID["nearestgalaxy__metric"]
    assert search.best_params_["crop64__size"] in GRID["crop64__size"]
    assert len(search.cv_results_["params"]) == 6
    assert 0 < search.best_score_ <= 1
    # the score is NearestGalaxy.score (precision@5), as cross_val_score computes it
    best = _pipe(n_neighbors=5).set_params(**search.best_params_)
    assert search.best_score_ == pytest.approx(cross_val_score(best, X, Y, cv=3).mean())
    # refit: the best pipeline searches
    assert search.best_estimator_.named_steps["crop64"].size == search.best_params_["crop64__size"]
    assert search.best_estimator_.kneighbors(Q, 3)[1].shape == (6, 3)


def test_grid_search_without_labels_says_labels_are_needed():
    grid = {"nearestgalaxy__metric": ["mse", "maxabs"]}
    search = GridSearchCV(_pipe(n_neighbors=5), grid, cv=2, error_score="raise")
    with pytest.raises(ValueError, match="scoring needs labels: pass y"):
        search.fit(X)
    # with the default error_score=nan, the warning carries the same message
    with pytest.warns(UserWarning, match="scoring needs labels"):
        GridSearchCV(_pipe(n_neighbors=5), grid, cv=2).fit(X)
    fitted = _pipe(n_neighbors=5).fit(X)
    with pytest.raises(ValueError, match="scoring needs labels"):
        fitted.score(Q)


def test_grid_search_retrieval_scorer():
    scorer = retrieval_scorer(k=5)
    search = GridSearchCV(_pipe(n_neighbors=5), GRID, cv=3, scoring=scorer)
    search.fit(X, Y)
    assert set(search.best_params_) == set(GRID)
    # retrieval_scorer(k=5) with n_neighbors=5 is the default score
    default = GridSearchCV(_pipe(n_neighbors=5), GRID, cv=3).fit(X, Y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], default.cv_results_["mean_test_score"]
    )


# ------------------------------------------------------------------ clone, pickle
def test_clone_gives_unfitted_equal_pipeline(fitted):
    c = clone(fitted)
    assert isinstance(c, SearchPipeline)
    assert c.get_params(deep=False)["steps"][0][0] == "crop64"
    assert not hasattr(c.named_steps["nearestgalaxy"], "n_samples_fit_")
    np.testing.assert_array_equal(c.fit(X, Y).kneighbors(Q)[1], fitted.kneighbors(Q)[1])


def test_pickle_round_trip(fitted):
    again = pickle.loads(pickle.dumps(fitted))
    assert isinstance(again, SearchPipeline)
    for a, b in zip(fitted.kneighbors(Q), again.kneighbors(Q), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fitted.nearest_per_class(Q)[1], again.nearest_per_class(Q)[1])


def test_joblib_round_trip(fitted, tmp_path):
    joblib.dump(fitted, tmp_path / "pipe.joblib")
    again = joblib.load(tmp_path / "pipe.joblib")
    for a, b in zip(fitted.kneighbors(Q), again.kneighbors(Q), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ method recipes
def test_pixel_recipe_equals_the_pipeline_by_hand():
    from galaxysim.pipeline import make_method_search

    recipe = make_method_search("maxabs", n_neighbors=4).fit(X, Y)
    by_hand = make_search_pipeline(PixelFlatten(), NearestGalaxy(n_neighbors=4, metric="maxabs"))
    by_hand.fit(X, Y)
    np.testing.assert_array_equal(recipe.kneighbors(Q)[1], by_hand.kneighbors(Q)[1])
    np.testing.assert_array_equal(recipe.kneighbors(Q)[0], by_hand.kneighbors(Q)[0])


def test_recipe_arguments_are_checked():
    from galaxysim.pipeline import make_method_search

    with pytest.raises(ValueError, match="Unknown method 'pca'; choose one of mse, maxabs"):
        make_method_search("pca")
    with pytest.raises(TypeError, match="takes no model"):
        make_method_search("mse", max_epochs=3)


def test_autoencoder_recipe_freezes_a_fitted_encoder_and_leaves_it_alone():
    from sklearn.preprocessing import StandardScaler

    from galaxysim.nn import AEEncoder
    from galaxysim.pipeline import make_method_search

    Xc = Crop64(size=16).fit_transform(X[:60])
    ae = AEEncoder(latent_dim=8, max_epochs=1, random_state=0).fit(Xc)
    before = ae.transform(Xc[:5])
    pipe = make_method_search("ae", model=ae, n_neighbors=5).fit(Xc)
    assert ae.orientation_invariant is False  # the caller's encoder is not changed
    np.testing.assert_array_equal(ae.transform(Xc[:5]), before)  # nor retrained
    codes = ae.set_params(orientation_invariant=True).transform(Xc)
    scaler = StandardScaler().fit(codes)
    by_hand = NearestGalaxy(n_neighbors=5, metric="cosine").fit(scaler.transform(codes))
    np.testing.assert_array_equal(
        pipe.kneighbors(Xc[:5])[1], by_hand.kneighbors(scaler.transform(codes[:5]))[1]
    )


def test_cnn_recipe_trains_an_unfitted_cnn_in_fit():
    from galaxysim.pipeline import make_cnn_search

    Xc = Crop64(size=16).fit_transform(X[:60])
    pipe = make_cnn_search(max_epochs=1, random_state=0, n_neighbors=3).fit(Xc, Y[:60])
    cnn = pipe.steps[0][1]
    assert hasattr(cnn, "net_")
    scores = cnn.predict_proba(Xc[:4])
    by_hand = NearestGalaxy(n_neighbors=3, metric="euclidean").fit(cnn.predict_proba(Xc))
    np.testing.assert_array_equal(pipe.kneighbors(Xc[:4])[1], by_hand.kneighbors(scores)[1])


def test_a_pipeline_of_only_the_search_step():
    rows = PixelFlatten().fit_transform(X)
    pipe = make_search_pipeline(NearestGalaxy(n_neighbors=3)).fit(rows, Y)
    np.testing.assert_array_equal(
        pipe.kneighbors(rows[:4])[1], NearestGalaxy(n_neighbors=3).fit(rows).kneighbors(rows[:4])[1]
    )


# ------------------------------------------------------------------ no search step
class _RecordingFlatten(PixelFlatten):
    fitted = 0

    def fit(self, X, y=None):
        type(self).fitted += 1
        return super().fit(X, y)


def test_a_pipeline_without_a_search_step_is_refused():
    match = r"ends with a search step.*NearestGalaxy; its last step is PixelFlatten.*kneighbors"
    with pytest.raises(TypeError, match=match):
        make_search_pipeline(Crop64(size=32), PixelFlatten())
    # built directly: refused by fit before any step is fitted, and by the searches
    pipe = SearchPipeline([("crop", Crop64(size=32)), ("flat", _RecordingFlatten())])
    with pytest.raises(TypeError, match=match.replace("PixelFlatten", "_RecordingFlatten")):
        pipe.fit(X, Y)
    assert _RecordingFlatten.fitted == 0
    for call in (
        lambda: pipe.kneighbors(Q),
        lambda: pipe.nearest_per_class(Q),
        pipe.catalogue_labels,
    ):
        with pytest.raises(TypeError, match="ends with a search step"):
            call()
    passthrough = SearchPipeline([("flat", PixelFlatten()), ("nn", "passthrough")])
    with pytest.raises(TypeError, match="its last step is 'passthrough'"):
        passthrough.kneighbors(Q)
