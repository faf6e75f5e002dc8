"""The private skorch plumbing: batch iterator, validation split, progress, the nets."""

import math

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.utils import to_tensor

from galaxysim.nn._augment import augment_dihedral, balanced_order
from galaxysim.nn._runtime import autocast, to_float32
from galaxysim.nn._tensors import images_to_tensor
from galaxysim.utils._progress import progress


class _ArrayIterator:
    """Batches by fancy indexing of the in-memory arrays (no per-image ``__getitem__``).

    Handles a skorch ``Dataset`` or a ``torch.utils.data.Subset`` of one. With
    ``balanced=True`` each epoch draws ``len(dataset)`` indices with
    :func:`balanced_order`, an equal share per class (a class-balanced sampler).
    Batches are raw (uint8 or float32, channels-last) tensors; the net converts them.
    """

    def __init__(self, dataset, batch_size=64, shuffle=False, balanced=False):
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.balanced = balanced

    def _arrays(self):
        ds = self.dataset
        if isinstance(ds, torch.utils.data.Subset):
            idx = np.asarray(ds.indices)
            ds = ds.dataset
        else:
            idx = np.arange(len(ds))
        return ds.X, ds.y, idx

    def __len__(self):
        return max(1, math.ceil(len(self.dataset) / self.batch_size))

    def __iter__(self):
        X, y, idx = self._arrays()
        n = len(idx)
        if self.balanced and y is not None:
            order = balanced_order(np.asarray(y)[idx])
        elif self.shuffle:
            order = torch.randperm(n).numpy()
        else:
            order = np.arange(n)
        for start in range(0, n, self.batch_size):
            b = idx[order[start : start + self.batch_size]]
            if self.shuffle or self.balanced:
                b = np.sort(b)  # memory locality; the batch is a set
            Xb = torch.from_numpy(np.ascontiguousarray(X[b]))
            yb = None if y is None else torch.from_numpy(np.asarray(y)[b])
            yield Xb, yb


class _IndexSplit:
    """skorch ``train_split`` with precomputed train/validation indices."""

    def __init__(self, train_idx, valid_idx):
        self.train_idx = train_idx
        self.valid_idx = valid_idx

    def __call__(self, dataset, y=None, **kwargs):
        Subset = torch.utils.data.Subset
        return Subset(dataset, self.train_idx), Subset(dataset, self.valid_idx)


class _EpochProgress(Callback):
    """One progress bar over epochs (galaxysim's progress helper) showing the losses."""

    def __init__(self, desc="training", verbose=1):
        self.desc = desc
        self.verbose = verbose

    def initialize(self):
        self.bar_ = None
        return self

    def on_train_begin(self, net, **kwargs):
        self.bar_ = progress(
            total=net.max_epochs, desc=self.desc, verbose=self.verbose, unit="epoch"
        )

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        keys = ("train_loss", "valid_loss", "train_acc", "valid_acc")
        self.bar_.set_postfix({k: f"{row[k]:.4g}" for k in keys if k in row}, refresh=False)
        self.bar_.update(1)

    def on_train_end(self, net, **kwargs):
        if self.bar_ is not None:
            self.bar_.close()
        self.bar_ = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["bar_"] = None
        return state


class _Interrupted(BaseException):
    """Carries a KeyboardInterrupt past skorch's ``partial_fit``, which swallows it."""


class _GalaxyNet(NeuralNet):
    """NeuralNet that converts raw image batches, augments them in training, runs the
    forward pass in ``precision`` (bfloat16 autocast; weights, gradients, optimizer and
    the returned outputs stay float32), records accuracy when ``record_accuracy`` is
    set, and lets a KeyboardInterrupt (Ctrl-C) propagate out of ``partial_fit``."""

    def __init__(self, *args, augment=False, record_accuracy=False, precision="float32", **kwargs):
        super().__init__(*args, **kwargs)
        self.augment = augment
        self.record_accuracy = record_accuracy
        self.precision = precision

    # skorch's partial_fit catches KeyboardInterrupt and returns as if training had
    # finished, so a Ctrl-C would give a half-trained model that looks fitted. Here it
    # passes skorch's handler as _Interrupted and is raised again, after the callbacks'
    # on_train_end (progress bars close). skorch's EarlyStopping also stops training by
    # raising KeyboardInterrupt; the estimators only use it with a patience it never
    # reaches (to keep the best epoch's weights), so every KeyboardInterrupt is a user's.
    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except KeyboardInterrupt as exc:
            raise _Interrupted(exc) from None

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        try:
            return super().partial_fit(X, y, classes, **fit_params)
        except _Interrupted as wrapped:
            try:
                self.notify("on_train_end", X=X, y=y)
            finally:
                raise wrapped.args[0] from None

    def forward_module(self, x, **fit_params):
        """The module's forward pass, under autocast for bfloat16, with float32 outputs."""
        if self.precision == "float32":
            return self.module_(x, **fit_params)
        with autocast(self.device, self.precision):
            out = self.module_(x, **fit_params)
        return to_float32(out)

    def prepare_batch(self, x):
        x = to_tensor(x, device=self.device)
        if self.augment and self.module_.training:
            x = augment_dihedral(x)
        return images_to_tensor(x, self.device)

    def infer(self, x, **fit_params):
        return self.forward_module(self.prepare_batch(x), **fit_params)

    def on_batch_end(self, net, batch=None, training=None, y_pred=None, **kwargs):
        if self.record_accuracy and y_pred is not None:
            y_true = batch[1].cpu()
            hit = y_pred.detach().argmax(1).cpu() == y_true
            n_classes = y_pred.shape[1]
            prefix = "train" if training else "valid"
            # per-class hits and counts, for the epoch's accuracy and balanced accuracy
            self.history.record_batch(
                prefix + "_class_correct",
                torch.bincount(y_true[hit], minlength=n_classes).tolist(),
            )
            self.history.record_batch(
                prefix + "_class_count", torch.bincount(y_true, minlength=n_classes).tolist()
            )

    def on_epoch_end(self, net, **kwargs):
        if not self.record_accuracy:
            return
        batches = self.history[-1, "batches"]
        for prefix in ("train", "valid"):
            rows = [b for b in batches if prefix + "_class_count" in b]
            if rows:
                correct = np.sum([b[prefix + "_class_correct"] for b in rows], axis=0)
                count = np.sum([b[prefix + "_class_count"] for b in rows], axis=0)
                present = count > 0
                self.history.record(prefix + "_acc", float(correct.sum() / count.sum()))
                self.history.record(
                    prefix + "_bacc", float(np.mean(correct[present] / count[present]))
                )


class _AENet(_GalaxyNet):
    """Autoencoder net: the target is the (augmented) input itself."""

    def infer(self, x, **fit_params):
        x = self.prepare_batch(x)
        return self.forward_module(x, **fit_params), x

    def get_loss(self, y_pred, y_true, X=None, training=False):
        recon, target = y_pred
        return torch.nn.functional.mse_loss(recon, target)


class _VAENet(_AENet):
    """VAE net: per-image summed squared error plus ``beta`` times the KL divergence."""

    def __init__(self, *args, beta=1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.beta = beta

    def get_loss(self, y_pred, y_true, X=None, training=False):
        (recon, mean, logvar), target = y_pred
        n = target.shape[0]
        sse = (recon - target).pow(2).sum() / n
        kl = -0.5 * (1 + logvar - mean.pow(2) - logvar.exp()).sum() / n
        return sse + self.beta * kl
