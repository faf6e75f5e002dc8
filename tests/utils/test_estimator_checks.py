"""The image-estimator checks pass a correct estimator and catch each defect they name."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from galaxysim.utils import check_images
from galaxysim.utils.estimator_checks import (
    IMAGE_CHECKS,
    _raises,
    check_bad_shapes,
    check_batch_and_order,
    check_do_not_raise_errors_in_init_or_set_params,
    check_dtypes,
    check_fit_returns_self,
    check_image_estimator,
    check_no_attributes_set_in_init,
    check_not_fitted,
    check_pickle,
    check_random_state,
)

X = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)


class Brightness(TransformerMixin, BaseEstimator):
    """Mean brightness of each image in [0, 1], times ``gain``: float32 features."""

    def __init__(self, gain=1.0):
        self.gain = gain

    def fit(self, X, y=None):
        self.n_channels_ = check_images(X).shape[-1]
        return self

    def _scale(self, X):
        return 255.0 if X.dtype == np.uint8 else 1.0

    def transform(self, X):
        check_is_fitted(self)
        X = check_images(X)
        mean = X.reshape(len(X), -1).mean(axis=1, keepdims=True) / self._scale(X)
        return (mean * self.gain).astype(np.float32)


class Invert(TransformerMixin, BaseEstimator):
    """Negative images, in the input's dtype (uint8 or float32)."""

    def fit(self, X, y=None):
        self.n_channels_ = check_images(X).shape[-1]
        return self

    def transform(self, X):
        check_is_fitted(self)
        X = check_images(X)
        return 255 - X if X.dtype == np.uint8 else 1 - X


class Noisy(Brightness):
    """Brightness plus noise drawn from ``random_state``."""

    def __init__(self, gain=1.0, random_state=None):
        super().__init__(gain=gain)
        self.random_state = random_state

    def fit(self, X, y=None):
        super().fit(X)
        self.offset_ = np.random.default_rng(self.random_state).normal()
        return self

    def transform(self, X):
        return super().transform(X) + np.float32(self.offset_)


# ---------------------------------------------------------------- defects, one per check
class IgnoresRandomState(Noisy):
    def fit(self, X, y=None):
        super().fit(X)
        self.offset_ = np.random.default_rng().normal()  # a fresh seed at every fit
        return self


class WorksUnfitted(Brightness):
    def transform(self, X):
        X = check_images(X)
        return (X.reshape(len(X), -1).mean(axis=1, keepdims=True) / self._scale(X)).astype(
            np.float32
        )


class FitReturnsNone(Brightness):
    def fit(self, X, y=None):
        super().fit(X)


class BatchMean(Brightness):
    def transform(self, X):
        out = super().transform(X)
        return out - out.mean()  # depends on the other queries of the batch


class AcceptsNaN(Brightness):
    def fit(self, X, y=None):
        self.n_channels_ = np.asarray(X).shape[-1]  # no validation
        return self


class ForgetsOnPickle(Noisy):
    def __getstate__(self):
        return {**super().__getstate__(), "offset_": 0.0}


class Float64Out(Brightness):
    def transform(self, X):
        return super().transform(X).astype(np.float64)


class UnscaledUint8(Brightness):
    def _scale(self, X):
        return 1.0  # uint8 images come out 255 times brighter


class InvertOffByTwo(Invert):
    def transform(self, X):
        out = super().transform(X)
        return (
            np.clip(out.astype(int) + 2, 0, 255).astype(np.uint8) if out.dtype == np.uint8 else out
        )


class Float64Stays(Invert):
    def transform(self, X):
        X = np.asarray(X)
        return 1.0 - X if X.dtype == np.float64 else super().transform(X)


class SetsAttributeInInit(Brightness):
    def __init__(self, gain=1.0):
        self.gain = gain
        self.scale = 2.0


class ValidatesInInit(Brightness):
    def __init__(self, gain=1.0):
        if not isinstance(gain, float):
            raise TypeError("gain must be a float")
        self.gain = gain


@pytest.mark.parametrize("est", [Brightness(), Invert(), Noisy(random_state=0), Noisy()], ids=repr)
def test_correct_estimators_pass_every_check(est):
    check_image_estimator(est, X)
    check_image_estimator(est, (X / 255).astype(np.float32))


@pytest.mark.parametrize(
    "est, check, match",
    [
        (IgnoresRandomState(), check_random_state, "fitted with random_state=0: values differ"),
        (WorksUnfitted(), check_not_fitted, "did not raise NotFittedError"),
        (FitReturnsNone(), check_fit_returns_self, "does not return self"),
        (BatchMean(), check_batch_and_order, "one query at a time"),
        (AcceptsNaN(), check_bad_shapes, "did not raise ValueError"),
        (ForgetsOnPickle(random_state=0), check_pickle, "after pickling"),
        (Float64Out(), check_dtypes, "float outputs are float32"),
        (UnscaledUint8(), check_dtypes, "uint8 and float32 images: values differ"),
        (InvertOffByTwo(), check_dtypes, r"more than one grey level on 9\d\.\d%"),
        (Float64Stays(), check_dtypes, "float64 images should be handled as float32"),
        (SetsAttributeInInit(), check_no_attributes_set_in_init, r"Found attributes \['scale'\]"),
        (ValidatesInInit(), check_do_not_raise_errors_in_init_or_set_params, "gain must be"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseEstimator) else None,
)
def test_each_check_catches_its_defect(est, check, match):
    assert check in IMAGE_CHECKS
    errors = (AssertionError, TypeError)  # sklearn's init check lets the TypeError through
    with pytest.raises(errors, match=match):
        check_image_estimator(est, X, checks=[check])


def test_failure_names_the_check_and_estimator():
    with pytest.raises(AssertionError, match=r"^check_fit_returns_self failed for FitReturnsNone"):
        check_image_estimator(FitReturnsNone(), X)


def test_uint8_output_within_rounding_passes():
    class RoundsDifferently(Invert):  # uint8 results one grey level off: rounding
        def transform(self, X):
            out = super().transform(X)
            return np.maximum(out, 1) - 1 if out.dtype == np.uint8 else out

    check_image_estimator(RoundsDifferently(), X, checks=[check_dtypes])


def test_raises_helper():
    with _raises(ValueError, "bad", what="x"):
        raise ValueError("a bad value")
    expected = "x raised ValueError as expected, but its message"
    with pytest.raises(AssertionError, match=expected), _raises(ValueError, "bad", what="x"):
        raise ValueError("other")
    with pytest.raises(AssertionError, match="x did not raise"), _raises(ValueError, what="x"):
        pass
    # another exception is not swallowed
    with pytest.raises(KeyError), _raises(ValueError, what="x"):
        raise KeyError("k")


def test_works_without_pytest():
    code = (
        "import sys; sys.modules['pytest'] = None\n"  # `import pytest` now fails
        "import numpy as np\n"
        "from galaxysim.preprocessing import CenterCrop\n"
        "from galaxysim.utils.estimator_checks import check_image_estimator\n"
        "X = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)\n"
        "check_image_estimator(CenterCrop(size=8), X)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
