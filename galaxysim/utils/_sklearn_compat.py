"""The one module that imports scikit-learn's private helpers.

Every estimator declares ``_parameter_constraints`` (scikit-learn's format) and
validates them in ``fit`` through :data:`fit_context` (stateless transformers call
``_validate_params`` in ``transform``). :class:`ParamsValidationMixin` adds one rule to
scikit-learn's: a ``bool`` is refused where a number or a string is expected
(``CenterCrop(size=True)`` would otherwise crop to 1x1 pixels).
"""

from numbers import Integral, Real

from sklearn.base import _fit_context
from sklearn.utils._param_validation import (
    HasMethods,
    Hidden,
    Interval,
    InvalidParameterError,
    Options,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
)

__all__ = [
    "HasMethods",
    "Hidden",
    "Integral",
    "Interval",
    "InvalidParameterError",
    "Options",
    "ParamsValidationMixin",
    "Real",
    "RealNotInt",
    "StrOptions",
    "fit_context",
    "n_jobs_constraint",
    "positive_int",
    "positive_real",
]

fit_context = _fit_context(prefer_skip_nested_validation=True)
"""Decorator of ``fit``: validates ``_parameter_constraints`` first."""


def positive_int(upper=None):
    """Constraint: an int >= 1 (and <= ``upper``)."""
    return Interval(Integral, 1, upper, closed="left" if upper is None else "both")


def positive_real():
    """Constraint: a finite number > 0 (``inf`` and NaN are refused)."""
    return Interval(Real, 0, None, closed="neither")


def n_jobs_constraint():
    """Constraints of ``n_jobs``: None or a non-zero int (joblib's meaning)."""
    return [
        None,
        Interval(Integral, 1, None, closed="left"),
        Interval(Integral, None, -1, closed="right"),
    ]


def _accepts_bool(constraints):
    return any(
        c == "boolean"
        or c is bool
        or (isinstance(c, Options) and any(isinstance(v, bool) for v in c.options))
        or c in ("no_validation",)
        for c in constraints
    )


class ParamsValidationMixin:
    """``_validate_params`` with scikit-learn's constraints, and no bools for numbers."""

    def _validate_params(self):
        params = self.get_params(deep=False)
        validate_parameter_constraints(
            self._parameter_constraints, params, caller_name=type(self).__name__
        )
        for name, constraints in self._parameter_constraints.items():
            value = params.get(name)
            if isinstance(value, bool) and not _accepts_bool(constraints):
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must not be a bool; "
                    f"got {value!r}."
                )
