"""Common checks for image estimators (4-D input), which sklearn's checks do not cover.

Use :func:`check_image_estimator` in tests of every galaxysim image transformer or
estimator; 2-D estimators use ``sklearn.utils.estimator_checks.parametrize_with_checks``.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import get_tags

__all__ = ["IMAGE_CHECKS", "check_image_estimator"]


def _output(est, X):
    if hasattr(est, "transform"):
        return est.transform(X)
    return est.predict(X)


def _close(a, b, atol):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        return a.shape == b.shape and np.allclose(a, b, atol=atol, rtol=0)
    return np.array_equal(a, b)


def check_clone(est, X, y, atol):
    """``clone`` gives an unfitted estimator with equal parameters."""
    c = clone(est)
    assert c.get_params() == est.get_params()


def check_fit_returns_self(est, X, y, atol):
    """``fit`` returns the estimator itself."""
    est = clone(est)
    assert est.fit(X, y) is est


def check_not_fitted(est, X, y, atol):
    """Using an unfitted estimator raises ``NotFittedError`` (unless it needs no fit)."""
    if not get_tags(est).requires_fit:
        return
    with pytest.raises(NotFittedError):
        _output(clone(est), X)


def check_random_state(est, X, y, atol):
    """The same ``random_state`` gives the same results."""
    if "random_state" not in est.get_params():
        return
    a = clone(est).set_params(random_state=0).fit(X, y)
    b = clone(est).set_params(random_state=0).fit(X, y)
    assert _close(_output(a, X), _output(b, X), atol)


def check_pickle(est, X, y, atol):
    """A fitted estimator survives a pickle round-trip with the same output."""
    est = clone(est).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    assert _close(_output(est, X), _output(again, X), atol)


def check_batch_and_order(est, X, y, atol):
    """Results do not depend on how queries are batched or ordered."""
    est = clone(est).fit(X, y)
    full = np.asarray(_output(est, X))
    parts = np.concatenate([np.asarray(_output(est, X[i : i + 1])) for i in range(len(X))])
    assert _close(full, parts, atol)
    perm = np.random.default_rng(0).permutation(len(X))
    assert _close(full[perm], _output(est, X[perm]), atol)


def check_bad_shapes(est, X, y, atol):
    """Wrong dimensions, channel counts and NaN pixels are rejected with clear messages."""
    with pytest.raises(ValueError, match="expected images"):
        clone(est).fit(np.zeros((2, 3, 4, 5, 6)), y)
    with pytest.raises(ValueError, match="channels"):
        clone(est).fit(np.zeros((len(X), *X.shape[1:3], 5), np.uint8), y)
    bad = X.astype(np.float32) / (255 if X.dtype == np.uint8 else 1)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(est).fit(bad, y)
    with pytest.raises(ValueError, match="empty"):
        clone(est).fit(X[:0], None if y is None else y[:0])


def check_dtypes(est, X, y, atol):
    """uint8, float32 and float64 images are accepted and give consistent results."""
    X8 = X if X.dtype == np.uint8 else np.round(X * 255).astype(np.uint8)
    outs = []
    for Xd in (X8, (X8 / 255).astype(np.float32), X8 / 255.0):
        outs.append(np.asarray(_output(clone(est).fit(Xd, y), Xd), dtype=np.float64))
    assert all(o.shape == outs[0].shape for o in outs)


IMAGE_CHECKS = (
    check_clone,
    check_fit_returns_self,
    check_not_fitted,
    check_random_state,
    check_pickle,
    check_batch_and_order,
    check_bad_shapes,
    check_dtypes,
)
"""All image estimator checks, in the order :func:`check_image_estimator` runs them."""


def check_image_estimator(estimator, X, y=None, *, atol=1e-6, checks=IMAGE_CHECKS):
    """Run the galaxysim image-estimator contract checks on ``estimator``.

    Parameters
    ----------
    estimator : estimator
        Unfitted image transformer or estimator.
    X : ndarray of shape (n_samples, height, width, n_channels)
        Small images it can be fitted on.
    y : array-like of shape (n_samples,), default=None
        Labels, for supervised estimators.
    atol : float, default=1e-6
        Tolerance when comparing float outputs.
    checks : sequence of callables, default=IMAGE_CHECKS
        The checks to run; each is ``check(estimator, X, y, atol)``.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.preprocessing import CenterCrop
    >>> X = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    >>> check_image_estimator(CenterCrop(size=8), X)
    """
    for check in checks:
        check(estimator, X, y, atol)
