"""The base of the galaxysim torch estimators (private)."""

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import EarlyStopping, LRScheduler

from galaxysim.nn._nets import _ArrayIterator, _EpochProgress, _IndexSplit
from galaxysim.nn._runtime import PRECISIONS, resolve_device, seed_from, seeded, torch_threads
from galaxysim.nn._tensors import (
    BF16_INFER_BATCH_SIZE,
    INFER_BATCH_SIZE,
    MEMORY_FORMAT,
    check_nn_images,
    inference,
)
from galaxysim.utils._sklearn_compat import (
    Interval,
    ParamsValidationMixin,
    Real,
    StrOptions,
    n_jobs_constraint,
    positive_int,
    positive_real,
)

MAX_WIDTH = 4096
"""Upper bound of the layer widths (``channels``, ``hidden``, ``latent_dim``)."""


HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "train_bacc",
    "valid_loss",
    "valid_acc",
    "valid_bacc",
    "dur",
)
"""What ``history_`` keeps of skorch's history, per epoch (model files store the same)."""


class _TorchImageEstimator(ParamsValidationMixin, BaseEstimator):
    """Fit scaffolding shared by the galaxysim torch estimators (private).

    Parameters are validated against ``_parameter_constraints`` when ``fit`` starts
    and again before each inference call (they can be changed with ``set_params``
    in between).
    """

    _progress_desc = "training"

    _parameter_constraints = {
        "channels": [positive_int(MAX_WIDTH)],
        "augment": ["boolean"],
        "max_epochs": [positive_int()],
        "lr": [positive_real()],
        "batch_size": [positive_int()],
        "validation_fraction": [None, Interval(Real, 0, 1, closed="left")],
        "device": [str],  # resolved (and checked against the hardware) in fit
        "n_jobs": n_jobs_constraint(),
        "precision": [StrOptions(set(PRECISIONS))],
        "random_state": ["random_state"],
        "verbose": ["verbose", "boolean"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags

    def _split(self, n, stratify, seed):
        vf = self.validation_fraction
        n_valid = int(math.ceil(n * vf)) if vf else 0
        if n_valid == 0 or n - n_valid < 1:
            return None
        idx = np.arange(n)
        try:
            tr, va = train_test_split(
                idx, test_size=n_valid, random_state=seed % 2**32, stratify=stratify
            )
        except ValueError:  # a class too small to stratify: plain random split
            tr, va = train_test_split(idx, test_size=n_valid, random_state=seed % 2**32)
        return _IndexSplit(np.sort(tr), np.sort(va))

    def _net_spec(self):
        """What the fitted estimator's skorch net is made of (a dict).

        ``net_cls``, ``module``, ``criterion``, ``net_params`` (extra arguments of the
        net) and ``balanced`` (class-balanced batches), from the parameters and the
        fitted attributes set before training; ``module_params`` comes from
        :meth:`_module_params`.
        """
        raise NotImplementedError

    def _module_params(self):
        """The module's constructor arguments, from the parameters and fitted attributes."""
        raise NotImplementedError

    def _build_net(self, device, *, train_split=None, callbacks=(), criterion_params=None):
        """The skorch net, uninitialised: the same construction for ``fit`` and loading."""
        spec = self._net_spec()
        params = {f"module__{k}": v for k, v in self._module_params().items()}
        params.update(spec["net_params"])
        params.update(criterion_params or {})
        params["precision"] = self.precision
        return spec["net_cls"](
            spec["module"],
            criterion=spec["criterion"],
            optimizer=torch.optim.Adam,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=_ArrayIterator,
            iterator_train__shuffle=True,
            iterator_train__balanced=spec["balanced"],
            iterator_valid=_ArrayIterator,
            train_split=train_split,
            device=device,
            verbose=max(0, int(self.verbose) - 1),  # skorch's epoch table at verbose >= 2
            callbacks=list(callbacks),
            **params,
        )

    def _fit_net(
        self,
        X,
        y,
        *,
        stratify=None,
        criterion_params=None,
        module_init=None,
        restore_best=None,
        one_cycle=False,
    ):
        """Build and train the skorch net; ``restore_best`` names a validation score
        (higher is better) whose best epoch's weights are kept instead of the last's
        (``False``: the last epoch's, still recording ``best_epoch_``); ``one_cycle``
        schedules the learning rate per batch with torch's ``OneCycleLR`` peaking at
        ``lr``."""
        device = resolve_device(self.device)
        seed = seed_from(self.random_state)
        split = self._split(len(X), stratify, seed)
        callbacks = []
        if self.verbose:
            callbacks.append(("progress", _EpochProgress(self._progress_desc, self.verbose)))
        if restore_best and split is not None:
            # skorch's early stopping with a patience it never reaches: it only keeps a
            # copy of the best epoch's weights and loads them when training ends
            keep_best = EarlyStopping(
                monitor=restore_best,
                lower_is_better=False,
                patience=self.max_epochs + 1,
                threshold=0,
                load_best=True,  # says so with skorch's epoch table (verbose >= 2)
            )
            callbacks.append(("restore_best", keep_best))
        if one_cycle:
            n_train = len(X) if split is None else len(split.train_idx)
            schedule = LRScheduler(
                policy=torch.optim.lr_scheduler.OneCycleLR,
                max_lr=self.lr,
                total_steps=self.max_epochs * math.ceil(n_train / self.batch_size),
                step_every="batch",
            )
            callbacks.append(("lr_schedule", schedule))
        net = self._build_net(
            device, train_split=split, callbacks=callbacks, criterion_params=criterion_params
        )
        with seeded(seed, device), torch_threads(self.n_jobs):
            net.initialize()
            if module_init is not None:
                module_init(net.module_)
            net.module_.to(memory_format=MEMORY_FORMAT)
            net.partial_fit(X, y)  # fit() would re-initialize the module
        net.train_split = None  # holds only indices, but they mean nothing after fit
        net.module_.eval()
        with torch_threads(self.n_jobs):
            _check_diverged(self, net, X)
        self.net_ = net
        if restore_best is not None:
            self.best_epoch_ = len(net.history)
            if restore_best and split is not None:
                keep_best = dict(net.callbacks_)["restore_best"]
                if keep_best.best_epoch_:  # 0: no finite score, the last epoch was kept
                    self.best_epoch_ = int(keep_best.best_epoch_)
                keep_best.best_model_weights_ = None  # the module holds them; don't pickle twice
        self.history_ = [
            {k: (int(row[k]) if k == "epoch" else float(row[k])) for k in HISTORY_KEYS if k in row}
            for row in net.history
        ]
        return self

    _divergence_hint = "Lower lr"

    def _restore_net(self, module_state, criterion_state):
        """Rebuild ``net_`` from saved tensors (fitted attributes already set).

        The module is built as ``fit`` builds it; its random initial weights are drawn
        inside :func:`torch.random.fork_rng` (the caller's RNG is untouched) and then
        replaced by ``module_state``.
        """
        device = resolve_device(self.device)
        criterion_params = {f"criterion__{k}": v for k, v in criterion_state.items()}
        net = self._build_net(device, criterion_params=criterion_params)
        with seeded(0, device):
            net.initialize()
        net.module_.to(memory_format=MEMORY_FORMAT)
        net.module_.load_state_dict(module_state, strict=True)
        net.module_.eval()
        self.net_ = net
        return self

    def _infer(self, X, fn, batch_size=None):
        self._check_fitted()
        precision = self.precision
        if batch_size is None:
            batch_size = INFER_BATCH_SIZE if precision == "float32" else BF16_INFER_BATCH_SIZE
        with torch_threads(self.n_jobs):
            return inference(
                self.net_.module_,
                X,
                fn,
                device=self.net_.device,
                batch_size=batch_size,
                precision=precision,
            )

    def _check_fitted(self):
        """Raise unless fitted; validate the parameters (``set_params`` may have run)."""
        check_is_fitted(self, "net_")
        self._validate_params()

    def _validate_fitted(self, X, name="X"):
        self._check_fitted()
        return check_nn_images(X, name=name, image_shape=self.image_shape_)


def _forward_all(module, x):
    out = module(x)
    return torch.cat([t.flatten(1).float() for t in (out if isinstance(out, tuple) else (out,))], 1)


def _check_diverged(est, net, X, n_check=8):
    """Raise when training left a network that outputs NaN or infinite values.

    Like scikit-learn's SGD estimators, a fit whose arithmetic overflowed is an error,
    not a model: a too large learning rate (``lr=1e30``) or loss weight does that. The
    weights, and the outputs for the first ``n_check`` training images, must be finite
    (huge finite weights overflow in the forward pass).
    """
    with torch.no_grad():
        finite = all(
            bool(torch.isfinite(t).all())
            for t in net.module_.state_dict().values()
            if t.is_floating_point()
        )
    if finite:
        out = inference(
            net.module_, X[:n_check], _forward_all, device=net.device, precision=est.precision
        )
        finite = bool(np.isfinite(out).all())
    if finite:
        return
    losses = [row.get("train_loss") for row in net.history]
    bad = next((i for i, v in enumerate(losses, 1) if v is None or not np.isfinite(v)), None)
    where = "" if bad is None else f"; the train loss was {losses[bad - 1]} at epoch {bad}"
    raise ValueError(
        f"{type(est).__name__} training diverged: the trained network outputs NaN or "
        f"infinite values{where}. {est._divergence_hint} (lr={est.lr!r}) and fit again."
    )
