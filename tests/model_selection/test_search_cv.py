"""cross_validate_search: the per-fold definition of every score, shapes, fold hygiene."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from galaxysim.datasets import make_galaxies
from galaxysim.metrics import mean_average_precision, precision_at_k, precision_at_k_per_class
from galaxysim.model_selection import SearchCVResult, cross_validate_search
from galaxysim.neighbors import NearestGalaxy
from galaxysim.pipeline import make_search_pipeline
from galaxysim.preprocessing import PixelFlatten

# A hand-made case where pooling the folds and averaging per fold disagree. Two training
# anchors, 0.0 (label 0) and 10.0 (label 1), in both folds; every query's nearest
# neighbour (k=1) is the anchor on its side.
#   fold 0 queries: 0.1 (label 0, hit), 0.2 (0, hit), 0.3 (1, miss)
#   fold 1 queries: 9.9 (label 0, miss), 9.8 (1, hit), 9.7 (1, hit), 9.6 (1, hit)
# balanced precision@1: fold 0 (1 + 0) / 2 = 1/2, fold 1 (0 + 1) / 2 = 1/2 -> mean 1/2;
# pooled: class 0 2/3, class 1 3/4 -> 17/24.
# mean precision@1: fold 0 2/3, fold 1 3/4 -> mean 17/24; pooled 5/7.
HAND_X = np.array([0.0, 10.0, 0.1, 0.2, 0.3, 9.9, 9.8, 9.7, 9.6])[:, None]
HAND_Y = np.array([0, 1, 0, 0, 1, 0, 1, 1, 1])
HAND_CV = [([0, 1], [2, 3, 4]), ([0, 1], [5, 6, 7, 8])]


def hand_search():
    return NearestGalaxy(metric="mse")  # a bare search estimator is a search too


def test_scores_are_means_over_folds_not_pooled():
    (res,) = cross_validate_search({"nn": hand_search()}, HAND_X, HAND_Y, cv=HAND_CV, k=1).values()
    np.testing.assert_array_equal(res.indices, [2, 3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(res.test_fold, [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(res.neighbor_labels[:, 0], [0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(res.n_relevant, [1] * 7)

    np.testing.assert_allclose(res.fold_scores["precision_balanced"], [1 / 2, 1 / 2])
    np.testing.assert_allclose(res.fold_scores["precision_mean"], [2 / 3, 3 / 4])
    np.testing.assert_allclose(res.fold_scores["precision_per_class"], [[1, 0], [0, 1]])
    assert res.score == pytest.approx(1 / 2)
    assert res.mean("precision_mean") == pytest.approx(17 / 24)
    np.testing.assert_allclose(res.mean("precision_per_class"), [1 / 2, 1 / 2])
    assert res.score_sd == 0.0
    assert res.sd("precision_mean") == pytest.approx((3 / 4 - 2 / 3) / np.sqrt(2))  # ddof=1
    # with k=1 and one relevant item each, average precision is the hit itself
    np.testing.assert_allclose(res.fold_scores["map_balanced"], [1 / 2, 1 / 2])
    np.testing.assert_allclose(res.fold_scores["precision_curve_balanced"], [[1 / 2], [1 / 2]])

    # pooling the out-of-fold results would give other numbers
    pooled = precision_at_k(res.y_true, res.neighbor_labels, average="balanced")
    assert pooled == pytest.approx(17 / 24)
    assert res.score != pytest.approx(pooled)
    assert precision_at_k(res.y_true, res.neighbor_labels) == pytest.approx(5 / 7)
    assert precision_at_k_per_class(res.y_true, res.neighbor_labels) == pytest.approx(
        {0: 2 / 3, 1: 3 / 4}
    )


def test_result_built_by_hand_gives_the_same_scores():
    res = SearchCVResult(
        "toy",
        1,
        classes=np.array([0, 1]),
        indices=np.arange(7),
        test_fold=np.array([0, 0, 0, 1, 1, 1, 1]),
        y_true=HAND_Y[2:],
        neighbor_labels=np.array([[0], [0], [0], [1], [1], [1], [1]]),
        n_relevant=np.ones(7, int),
        fit_time=np.zeros(2),
        query_time=np.zeros(2),
    )
    assert res.score == pytest.approx(1 / 2)
    assert res.n_folds == 2
    assert "0.500" in repr(res)
    with pytest.raises(KeyError, match="has no score 'accuracy'"):
        res.mean("accuracy")


def test_a_class_missing_from_a_fold_is_left_out_of_its_mean():
    cv = [([0, 1], [2, 3]), ([0, 1], [5, 6, 7])]  # fold 0 has no label-1 query
    (res,) = cross_validate_search({"nn": hand_search()}, HAND_X, HAND_Y, cv=cv, k=1).values()
    per_class = res.fold_scores["precision_per_class"]
    assert np.isnan(per_class[0, 1])
    np.testing.assert_allclose(res.mean("precision_per_class"), [(1 + 0) / 2, 1.0])
    # balanced precision of a fold averages the classes it has
    np.testing.assert_allclose(res.fold_scores["precision_balanced"], [1.0, 1 / 2])


# ------------------------------------------------------------------ shapes, cv forms
@pytest.fixture(scope="module")
def tiny():
    return make_galaxies(60, image_size=16, random_state=0)


def pixels(metric="mse"):
    return make_search_pipeline(PixelFlatten(), NearestGalaxy(metric=metric))


def test_shapes_per_method_class_and_fold(tiny):
    X, y = tiny
    results = cross_validate_search(
        {"mse": pixels("mse"), "maxabs": pixels("maxabs")}, X, y, cv=3, k=5, random_state=0
    )
    assert list(results) == ["mse", "maxabs"]
    for name, res in results.items():
        assert res.method == name and res.k == 5 and res.n_folds == 3
        np.testing.assert_array_equal(res.classes, np.arange(10))
        assert sorted(res.indices.tolist()) == list(range(60))  # every image queried once
        np.testing.assert_array_equal(res.y_true, y[res.indices])
        assert np.bincount(res.test_fold).tolist() == [20, 20, 20]
        assert res.neighbor_labels.shape == (60, 5)
        assert res.n_relevant.tolist() == [4] * 60  # 6 per class, 2 in each test fold
        shapes = {key: value.shape for key, value in res.fold_scores.items()}
        assert shapes == {
            "precision_balanced": (3,),
            "precision_mean": (3,),
            "map_balanced": (3,),
            "map_mean": (3,),
            "precision_per_class": (3, 10),
            "precision_curve_balanced": (3, 5),
            "precision_curve_mean": (3, 5),
        }
        assert res.fit_time.shape == res.query_time.shape == (3,)
        assert res.predictions is None and res.confusion_matrix() is None
        assert res.histories == [None, None, None]
        assert res.mean("precision_curve_balanced")[-1] == pytest.approx(res.score)
    # the same folds for every method
    np.testing.assert_array_equal(results["mse"].indices, results["maxabs"].indices)


def test_each_fold_scored_by_galaxysim_metrics(tiny):
    X, y = tiny
    (res,) = cross_validate_search({"mse": pixels()}, X, y, cv=3, k=5, random_state=1).values()
    splits = StratifiedKFold(3, shuffle=True, random_state=1).split(X, y)
    flat = X.reshape(len(X), -1)
    for f, (train, test) in enumerate(splits):
        ind = NearestGalaxy().fit(flat[train]).kneighbors(flat[test], 5, return_distance=False)
        labels = y[train][ind]
        rows = res.test_fold == f
        np.testing.assert_array_equal(res.indices[rows], test)
        np.testing.assert_array_equal(res.neighbor_labels[rows], labels)
        n_rel = [np.sum(y[train] == v) for v in y[test]]
        assert res.fold_scores["precision_balanced"][f] == pytest.approx(
            precision_at_k(y[test], labels, average="balanced")
        )
        assert res.fold_scores["map_balanced"][f] == pytest.approx(
            mean_average_precision(y[test], labels, n_relevant=n_rel, average="balanced")
        )
        assert res.fold_scores["precision_curve_mean"][f, 1] == pytest.approx(
            precision_at_k(y[test], labels, k=2)
        )


def test_cv_int_splitter_and_pairs_agree(tiny):
    X, y = tiny
    skf = StratifiedKFold(3, shuffle=True, random_state=0)
    by_int = cross_validate_search({"m": pixels()}, X, y, cv=3, k=4, random_state=0)["m"]
    by_splitter = cross_validate_search({"m": pixels()}, X, y, cv=skf, k=4)["m"]
    by_pairs = cross_validate_search({"m": pixels()}, X, y, cv=list(skf.split(X, y)), k=4)["m"]
    for other in (by_splitter, by_pairs):
        np.testing.assert_array_equal(other.indices, by_int.indices)
        np.testing.assert_array_equal(other.neighbor_labels, by_int.neighbor_labels)
    unshuffled = cross_validate_search({"m": pixels()}, X, y, cv=KFold(2), k=4)["m"]
    np.testing.assert_array_equal(unshuffled.indices, np.arange(60))


def test_pipeline_is_cloned_and_left_unfitted(tiny):
    X, y = tiny
    pipe = pixels()
    cross_validate_search({"m": pipe}, X, y, cv=2, k=3, random_state=0)
    for step in (pipe[0], pipe[-1]):
        with pytest.raises(NotFittedError):
            check_is_fitted(step)


def test_callback_and_order_folds_then_methods(tiny):
    X, y = tiny
    calls = []
    cross_validate_search(
        {"a": pixels(), "b": pixels("maxabs")},
        X,
        y,
        cv=2,
        k=3,
        random_state=0,
        callback=lambda method, fold: calls.append((method, fold)),
    )
    assert calls == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]


def test_verbose_progress_bar_on_stderr(tiny, capsys):
    X, y = tiny
    cross_validate_search({"m": pixels()}, X, y, cv=2, k=2, verbose=1)
    assert "cross-validate" in capsys.readouterr().err


# ------------------------------------------------------------------ deep-model callables
class RecordingModel(ClassifierMixin, TransformerMixin, BaseEstimator):
    """A stand-in for a deep model: the class centroids as features, a history_,
    and the sample ids (pixel [0, 0, 0] + 256 * pixel [0, 1, 0]) it was trained on."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        flat = X.reshape(len(X), -1).astype(float)
        self.centroids_ = np.array([flat[y == c].mean(0) for c in self.classes_])
        self.trained_on_ = set(sample_ids(X).tolist())
        self.history_ = [{"epoch": 1, "train_loss": float(len(X))}]
        return self

    def transform(self, X):
        flat = X.reshape(len(X), -1).astype(float)
        return -((flat[:, None, :] - self.centroids_[None]) ** 2).mean(-1)

    def predict(self, X):
        return self.classes_[self.transform(X).argmax(1)]


def sample_ids(X):
    return X[:, 0, 0, 0].astype(int) + 256 * X[:, 0, 1, 0].astype(int)


@pytest.fixture(scope="module")
def tagged():
    X, y = make_galaxies(60, image_size=16, random_state=2)
    X = X.copy()
    ids = np.arange(len(X))
    X[:, 0, 0, 0], X[:, 0, 1, 0] = ids % 256, ids // 256
    return X, y


def test_deep_model_callable_trained_on_the_training_fold_only(tagged):
    X, y = tagged
    models, seen = [], []

    def build(X_train, y_train):
        seen.append((X_train, y_train))
        model = RecordingModel().fit(X_train, y_train)
        models.append(model)
        return make_search_pipeline(FrozenEstimator(model), NearestGalaxy(metric="euclidean"))

    def build_again(X_train, y_train):  # a second method: gets the very same fold arrays
        assert X_train is seen[-1][0] and y_train is seen[-1][1]
        return make_search_pipeline(PixelFlatten(), NearestGalaxy())

    results = cross_validate_search(
        {"deep": build, "pixels": build_again}, X, y, cv=3, k=5, random_state=0
    )
    res = results["deep"]
    assert len(models) == 3
    for f, model in enumerate(models):
        test_ids = set(res.indices[res.test_fold == f].tolist())
        assert model.trained_on_ and not model.trained_on_ & test_ids
        assert model.trained_on_ | test_ids == set(range(60))
    # out-of-fold predictions of each fold's model, and its history
    assert res.predictions.shape == (60,)
    for f, model in enumerate(models):
        rows = res.test_fold == f
        np.testing.assert_array_equal(res.predictions[rows], model.predict(X[res.indices[rows]]))
    assert res.histories == [m.history_ for m in models]
    cm = res.confusion_matrix()
    assert cm.shape == (10, 10) and cm.sum() == 60
    acc = res.fold_scores["accuracy"]
    assert acc.shape == (3,) and res.fold_scores["recall_per_class"].shape == (3, 10)
    for f in range(3):
        rows = res.test_fold == f
        assert acc[f] == pytest.approx(np.mean(res.predictions[rows] == res.y_true[rows]))
    assert results["pixels"].predictions is None


def test_cnn_scorer_callable(tiny):
    pytest.importorskip("torch")
    from galaxysim.nn import CNNScorer

    X, y = tiny
    sizes = []

    def build(X_train, y_train):
        sizes.append(len(X_train))
        cnn = CNNScorer(max_epochs=1, random_state=0).fit(X_train, y_train)
        return make_search_pipeline(FrozenEstimator(cnn), NearestGalaxy(metric="euclidean"))

    (res,) = cross_validate_search({"cnn": build}, X, y, cv=2, k=3, random_state=0).values()
    assert sizes == [30, 30]
    assert res.predictions.shape == (60,) and set(res.predictions) <= set(range(10))
    assert len(res.histories) == 2 and all(len(h) == 1 for h in res.histories)
    assert 0.0 <= res.mean("balanced_accuracy") <= 1.0


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"searches": {}}, TypeError, "non-empty dict"),
        ({"searches": {"m": 3}}, TypeError, r"searches\['m'\] must be a search pipeline"),
        ({"k": 0}, ValueError, "k must be an int >= 1"),
        ({"k": True}, ValueError, "k must be an int >= 1"),
        ({"k": 31}, ValueError, "k=31 exceeds the 30 training images of fold 0"),
        ({"cv": 1}, ValueError, "at least 2 folds"),
        ({"cv": True}, TypeError, "cv must be an int"),
        ({"y": np.zeros(59)}, ValueError, "inconsistent numbers of samples"),
    ],
)
def test_errors(tiny, kwargs, error, match):
    X, y = tiny
    args = {"searches": {"m": pixels()}, "X": X, "y": y, "cv": 2, "k": 3, **kwargs}
    with pytest.raises(error, match=match):
        cross_validate_search(args.pop("searches"), args.pop("X"), args.pop("y"), **args)


def test_a_frozen_fitted_step_is_refused():
    from sklearn.preprocessing import StandardScaler

    X = np.random.default_rng(0).random((30, 4))
    y = np.arange(30) % 3
    pipe = make_search_pipeline(FrozenEstimator(StandardScaler().fit(X)), NearestGalaxy())
    with pytest.raises(ValueError, match="frozen, already fitted step .* leak"):
        cross_validate_search({"leaky": pipe}, X, y, cv=3, k=2)


# ------------------------------------------------------------------ audit siblings (issue 10)
def test_boolean_masks_are_folds_of_their_true_images():
    train = np.isin(np.arange(9), [0, 1])
    masks = [
        (train, np.isin(np.arange(9), [2, 3, 4])),
        (train, np.isin(np.arange(9), [5, 6, 7, 8])),
    ]
    (res,) = cross_validate_search({"nn": hand_search()}, HAND_X, HAND_Y, cv=masks, k=1).values()
    (ref,) = cross_validate_search({"nn": hand_search()}, HAND_X, HAND_Y, cv=HAND_CV, k=1).values()
    assert res.neighbor_labels.shape == (7, 1)
    np.testing.assert_array_equal(res.indices, ref.indices)
    np.testing.assert_array_equal(res.neighbor_labels, ref.neighbor_labels)


@pytest.mark.parametrize(
    "cv, match",
    [
        ([([0, 1], [2, 3, 40])], r"test indices of fold 0 hold 40, outside the 9 images"),
        ([([0.0, 1.0], [2, 3])], r"train indices of fold 0 must be a 1-D array of integer"),
        ([([0, 1], [])], "The test part of fold 0 is empty"),
        ([([0, 1, 2], [2, 3])], r"test fold 0 shares 1 images with its training fold .*image 2"),
        ([([0, 1], [2, 2, 3])], "test fold 0 names some images more than once"),
        ([(np.ones(4, bool), [5, 6])], r"train mask of fold 0 has shape \(4,\)"),
    ],
)
def test_bad_folds_are_clear_errors(cv, match):
    with pytest.raises(ValueError, match=match):
        cross_validate_search({"nn": hand_search()}, HAND_X, HAND_Y, cv=cv, k=1)


def test_callback_must_be_callable_before_any_work():
    with pytest.raises(TypeError, match=r"callback must be callable as callback\(method, fold\)"):
        cross_validate_search({"nn": hand_search()}, HAND_X, HAND_Y, cv=HAND_CV, k=1, callback=5)


def test_builders_must_return_a_search_and_labels_are_needed():
    with pytest.raises(TypeError, match=r"searches\['nn'\] is a builder, but .* returned NoneType"):
        cross_validate_search({"nn": lambda X, y: None}, HAND_X, HAND_Y, cv=HAND_CV, k=1)
    with pytest.raises(ValueError, match="pass y, one label per image"):
        cross_validate_search({"nn": hand_search()}, HAND_X, None, cv=HAND_CV, k=1)
