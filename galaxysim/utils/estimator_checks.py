"""Common checks for image estimators (4-D input), which sklearn's checks do not cover.

Use :func:`check_image_estimator` in tests of every galaxysim image transformer or
estimator; 2-D estimators use ``sklearn.utils.estimator_checks.parametrize_with_checks``.

Each check is a function ``check(estimator, X, y, atol)`` that raises an
``AssertionError`` saying what is wrong (it needs no test framework). The first checks
are scikit-learn's own checks that need no data (``get_params``/``set_params``,
``__init__`` that only stores its arguments, ``repr``, tags), run under the same names;
the others fit the estimator on the given images.
"""

import pickle
import re
from contextlib import contextmanager

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as _sk
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

__all__ = ["IMAGE_CHECKS", "check_image_estimator"]


# ------------------------------------------------------------------ helpers
def _name(est):
    return type(est).__name__


@contextmanager
def _raises(exc, match=None, *, what):
    """Expect ``exc`` (with a message matching ``match``) from the block.

    ``what`` says what was done, for the ``AssertionError`` raised otherwise.
    """
    try:
        yield
    except exc as e:
        if match is not None and not re.search(match, str(e)):
            raise AssertionError(
                f"{what} raised {type(e).__name__} as expected, but its message does not "
                f"match {match!r}: {e}"
            ) from e
    else:
        raise AssertionError(f"{what} did not raise {exc.__name__}.")


def _output(est, X):
    if hasattr(est, "transform"):
        return est.transform(X)
    return est.predict(X)


def _assert_close(a, b, atol, what):
    """Equal arrays (integer dtypes) or equal within ``atol`` (float dtypes)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise AssertionError(f"{what}: shapes {a.shape} and {b.shape} differ.")
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        a, b = a.astype(np.float64), b.astype(np.float64)
        if not np.allclose(a, b, atol=atol, rtol=0, equal_nan=True):
            worst = float(np.nanmax(np.abs(a - b)))
            raise AssertionError(f"{what}: values differ by up to {worst:.3g} > atol={atol:g}.")
    elif not np.array_equal(a, b):
        n = int((a != b).sum())
        raise AssertionError(f"{what}: {n} of {a.size} values differ.")


def _same_param(a, b):
    if isinstance(a, BaseEstimator) or isinstance(b, BaseEstimator):
        return type(a) is type(b) and _same_params(a.get_params(False), b.get_params(False))
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):  # arrays: elementwise ==
        return np.array_equal(np.asarray(a), np.asarray(b))


def _same_params(p, q):
    return p.keys() == q.keys() and all(_same_param(p[k], q[k]) for k in p)


def _fit(est, X, y):
    """A fitted clone of ``est`` (whatever ``fit`` returns: check_fit_returns_self checks)."""
    est = clone(est)
    est.fit(X, y)
    return est


def _seeded(est):
    """A clone, with ``random_state=0`` where it is ``None``: fits can be compared."""
    est = clone(est)
    if "random_state" in est.get_params() and est.get_params()["random_state"] is None:
        est.set_params(random_state=0)
    return est


def _as_uint8(X):
    X = np.asarray(X)
    return X if X.dtype == np.uint8 else np.round(X * 255).astype(np.uint8)


# ------------------------------------------------------------------ scikit-learn's data-free checks
def _sklearn_check(check):
    """Run scikit-learn's ``check(name, estimator)`` as an image-estimator check."""

    def run(est, X, y, atol):
        check(_name(est), est)

    run.__name__ = run.__qualname__ = check.__name__
    run.__doc__ = (
        f"scikit-learn's ``sklearn.utils.estimator_checks.{check.__name__}`` (needs no data)."
    )
    return run


check_estimator_cloneable = _sklearn_check(_sk.check_estimator_cloneable)
check_estimator_repr = _sklearn_check(_sk.check_estimator_repr)
check_no_attributes_set_in_init = _sklearn_check(_sk.check_no_attributes_set_in_init)
check_parameters_default_constructible = _sklearn_check(_sk.check_parameters_default_constructible)
check_get_params_invariance = _sklearn_check(_sk.check_get_params_invariance)
check_set_params = _sklearn_check(_sk.check_set_params)
check_do_not_raise_errors_in_init_or_set_params = _sklearn_check(
    _sk.check_do_not_raise_errors_in_init_or_set_params
)
check_mixin_order = _sklearn_check(_sk.check_mixin_order)
check_estimator_tags_renamed = _sklearn_check(_sk.check_estimator_tags_renamed)
check_valid_tag_types = _sklearn_check(_sk.check_valid_tag_types)


# ------------------------------------------------------------------ image checks
def check_clone(est, X, y, atol):
    """``clone`` gives a new, unfitted estimator with equal parameters, also of a fitted one."""
    fitted = _fit(est, X, y)
    for source, state in ((est, "an unfitted"), (fitted, "a fitted")):
        c = clone(source)
        if c is source or type(c) is not type(source):
            raise AssertionError(f"clone of {state} {_name(est)} is not a new {_name(est)}.")
        if not _same_params(c.get_params(deep=False), source.get_params(deep=False)):
            raise AssertionError(f"clone of {state} {_name(est)} has other parameters.")
        if get_tags(c).requires_fit:
            with _raises(NotFittedError, what=f"check_is_fitted on a clone of {state} estimator"):
                check_is_fitted(c)


def check_fit_returns_self(est, X, y, atol):
    """``fit`` returns the estimator itself."""
    est = clone(est)
    if est.fit(X, y) is not est:
        raise AssertionError(f"{_name(est)}.fit does not return self.")


def check_not_fitted(est, X, y, atol):
    """Using an unfitted estimator raises ``NotFittedError`` (unless it needs no fit)."""
    est = clone(est)
    if not get_tags(est).requires_fit:
        return
    with _raises(NotFittedError, what=f"transform or predict of an unfitted {_name(est)}"):
        _output(est, X)


def check_random_state(est, X, y, atol):
    """The same ``random_state`` gives the same results."""
    if "random_state" not in est.get_params():
        return
    a = _fit(clone(est).set_params(random_state=0), X, y)
    b = _fit(clone(est).set_params(random_state=0), X, y)
    _assert_close(
        _output(a, X), _output(b, X), atol, f"two {_name(est)} fitted with random_state=0"
    )


def check_pickle(est, X, y, atol):
    """A fitted estimator survives a pickle round-trip with the same output."""
    est = _fit(est, X, y)
    again = pickle.loads(pickle.dumps(est))
    _assert_close(_output(est, X), _output(again, X), atol, f"{_name(est)} after pickling")


def check_batch_and_order(est, X, y, atol):
    """Results do not depend on how queries are batched or ordered."""
    est = _fit(est, X, y)
    full = np.asarray(_output(est, X))
    parts = np.concatenate([np.asarray(_output(est, X[i : i + 1])) for i in range(len(X))])
    _assert_close(full, parts, atol, f"{_name(est)} on one query at a time and on the batch")
    perm = np.random.default_rng(0).permutation(len(X))
    _assert_close(full[perm], _output(est, X[perm]), atol, f"{_name(est)} on permuted queries")


def check_bad_shapes(est, X, y, atol):
    """Wrong dimensions, channel counts and NaN pixels are rejected with clear messages."""
    n = _name(est)
    with _raises(ValueError, "expected images", what=f"{n}.fit on 5-D input"):
        clone(est).fit(np.zeros((2, 3, 4, 5, 6)), y)
    with _raises(ValueError, "channels", what=f"{n}.fit on 5-channel images"):
        clone(est).fit(np.zeros((len(X), *X.shape[1:3], 5), np.uint8), y)
    bad = X.astype(np.float32) / (255 if X.dtype == np.uint8 else 1)
    bad[0, 0, 0, 0] = np.nan
    with _raises(ValueError, "NaN", what=f"{n}.fit on images with a NaN pixel"):
        clone(est).fit(bad, y)
    with _raises(ValueError, "empty", what=f"{n}.fit on 0 images"):
        clone(est).fit(X[:0], None if y is None else y[:0])


def check_dtypes(est, X, y, atol):
    """uint8, float32 and float64 copies of the same images give the same results.

    The estimator is fitted on, and applied to, each copy (``X`` in 0-255, and
    ``X / 255`` in float32 and float64). Outputs keep galaxysim's dtypes:

    - float64 images are handled as float32 ones: both give the same output dtype
      and values within ``atol``;
    - a float output is float32 (galaxysim never returns float64 images or features);
    - uint8 images give either uint8 (an image transformer keeps the dtype) or the
      dtype of the float images' output, with values within ``atol``. A uint8 output
      is rounded to whole grey levels, and resampling in 8 bits (Pillow) also rounds
      and clips its intermediate passes: it is compared with 255 times the float
      output, and must agree within one grey level (plus ``atol``) on 95% of the
      values and within one grey level on average.

    Estimators tagged ``non_deterministic`` have only their dtypes checked.
    """
    n = _name(est)
    X8 = _as_uint8(X)
    copies = {"uint8": X8, "float32": (X8 / 255).astype(np.float32), "float64": X8 / 255.0}
    est = _seeded(est)
    out = {k: np.asarray(_output(_fit(est, Xd, y), Xd)) for k, Xd in copies.items()}
    d8, d32, d64 = (out[k].dtype for k in copies)
    if d64 != d32:
        raise AssertionError(
            f"{n} returns {d32} for float32 images but {d64} for float64 ones; float64 "
            "images should be handled as float32."
        )
    if d32.kind == "f" and d32 != np.float32:
        raise AssertionError(f"{n} returns {d32} for float images; float outputs are float32.")
    if d8 not in (d32, np.dtype(np.uint8)):
        raise AssertionError(
            f"{n} returns {d8} for uint8 images: expected uint8 or {d32} (as for float images)."
        )
    if get_tags(est).non_deterministic:
        return
    _assert_close(out["float64"], out["float32"], atol, f"{n} on float64 and float32 images")
    if d8 == np.uint8 and d32.kind == "f":
        if out["uint8"].shape != out["float32"].shape:
            raise AssertionError(
                f"{n} on uint8 and float32 images: shapes {out['uint8'].shape} and "
                f"{out['float32'].shape} differ."
            )
        diff = np.abs(out["uint8"] - 255.0 * out["float32"].astype(np.float64))
        off = float(np.mean(diff > 1 + 255 * atol))
        if off > 0.05 or float(diff.mean()) > 1:
            raise AssertionError(
                f"{n} on uint8 images differs from 255 x its output on float32 images by "
                f"more than one grey level on {off:.1%} of the values (at most 5%), by "
                f"{float(diff.mean()):.2f} grey levels on average (at most 1) and by up to "
                f"{float(diff.max()):.1f}."
            )
    else:
        _assert_close(out["uint8"], out["float32"], atol, f"{n} on uint8 and float32 images")


IMAGE_CHECKS = (
    check_estimator_cloneable,
    check_estimator_repr,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_get_params_invariance,
    check_set_params,
    check_do_not_raise_errors_in_init_or_set_params,
    check_mixin_order,
    check_estimator_tags_renamed,
    check_valid_tag_types,
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

    Raises
    ------
    AssertionError
        The first check that fails, named in the message.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.preprocessing import CenterCrop
    >>> X = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    >>> check_image_estimator(CenterCrop(size=8), X)
    """
    for check in checks:
        try:
            check(estimator, X, y, atol)
        except AssertionError as exc:
            raise AssertionError(f"{check.__name__} failed for {estimator!r}: {exc}") from exc
