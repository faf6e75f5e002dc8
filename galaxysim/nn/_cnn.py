"""CNNScorer: a small CNN classifier whose class scores (or embedding) are search features."""

from collections.abc import Hashable, Iterable

import numpy as np
import torch
from sklearn.base import ClassifierMixin, TransformerMixin

from galaxysim import GALAXY10_GROUPS
from galaxysim.nn._estimator import MAX_WIDTH, _TorchImageEstimator
from galaxysim.nn._modules import CNNClassifierModule
from galaxysim.nn._nets import _GalaxyNet
from galaxysim.nn._runtime import RUNTIME_PARAMS_DOC
from galaxysim.nn._tensors import check_nn_images
from galaxysim.utils._sklearn_compat import (
    Integral,
    Interval,
    Real,
    StrOptions,
    fit_context,
    positive_int,
)
from galaxysim.utils.validation import check_labels

__all__ = ["CNNScorer"]

_GROUPINGS = {"galaxy10-5": GALAXY10_GROUPS}


class CNNScorer(ClassifierMixin, TransformerMixin, _TorchImageEstimator):
    __doc__ = (
        """Convolutional classifier of galaxy images whose scores serve as search features.

    A classifier (``predict``, ``predict_proba``, ``score``) and a transformer:
    ``transform`` gives per-image class probabilities (``output="proba"``) or the
    penultimate activations (``output="embedding"``), so that
    ``Crop64 -> CNNScorer -> NearestGalaxy`` searches in score space.

    Class imbalance is handled by default with a class-balanced sampler (each epoch
    draws as many images as the training set, an equal share from every class: a
    common class's without repeats, a rare class's repeated evenly), and training
    images are randomly flipped and rotated by multiples of 90 degrees. The learning
    rate follows one cycle over the training, and the best validated epoch is kept.

    Parameters
    ----------
    n_classes : int, default=None
        Number of classes; ``None`` infers it from ``y``. When given it must match.
    groups : {"galaxy10-5"} or dict, default=None
        Train on coarse groups of the labels: ``"galaxy10-5"`` maps Galaxy10 codes 0-9
        to the five groups of ``galaxysim.GALAXY10_GROUPS``; a dict maps group names to
        label tuples. ``classes_`` are then the group names, and ``score`` maps ``y``
        through the groups too.
    output : {"proba", "embedding"}, default="proba"
        What ``transform`` returns.
    channels : int, default=32
        Filters per convolution.
    hidden : int, default=64
        Width of the dense layers (the embedding size).
    dropout : float, default=0.1
        Dropout rate.
    balance : {"sampler", "loss"} or None, default="sampler"
        ``"sampler"``: class-balanced sampling; ``"loss"``: class-weighted cross entropy
        (stalls on rare classes, kept for comparison); ``None``: neither.
    augment : bool, default=True
        Random flips and 90-degree rotations of training images.
    max_epochs : int, default=15
        Training epochs.
    lr : float, default=3e-3
        Adam learning rate: the peak of the one-cycle schedule, or the constant rate.
    lr_schedule : {"one-cycle", "constant"}, default="one-cycle"
        ``"one-cycle"``: the rate rises from ``lr / 25`` to ``lr`` over the first 30% of
        the batches and anneals to almost zero by the last (torch's ``OneCycleLR``),
        which trains this network much further in a short budget than a constant rate.
    batch_size : int, default=64
        Training batch size.
    validation_fraction : float or None, default=0.1
        Stratified share of the training images held out to report ``valid_loss``,
        ``valid_acc`` and ``valid_bacc`` in ``history_``; ``None`` or 0 trains on
        everything.
    restore_best : bool, default=True
        With a validation split, keep the weights of the epoch with the best validation
        balanced accuracy (plain accuracy with ``balance=None``; the earliest of equally
        good epochs) rather than the last epoch's; it damps the epoch-to-epoch swings of
        a short training."""
        + RUNTIME_PARAMS_DOC
        + """
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, sampling, augmentation and dropout (through
        ``torch.random.fork_rng``; the global torch RNG is untouched). The same int
        gives a bitwise identical model on the CPU for the same ``n_jobs`` (thread
        count), kind of CPU and torch version (not guaranteed on a GPU).
    verbose : int, default=0
        1 shows a progress bar over epochs, 2 also skorch's per-epoch table.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels (group names with ``groups``).
    image_shape_ : tuple of int
        ``(height, width, n_channels)`` of the training images.
    net_ : skorch.NeuralNet
        The trained skorch net; its ``module_`` is a :class:`CNNClassifierModule`.
    history_ : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``train_acc``, ``train_bacc`` (balanced
        accuracy), ``valid_loss``, ``valid_acc``, ``valid_bacc`` (the last three with a
        validation split) and ``dur``.
    best_epoch_ : int
        The epoch (from 1) whose weights the model holds: the last one, or the best
        validated one with ``restore_best``.

    See Also
    --------
    AEEncoder : Unsupervised latent features.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.nn import CNNScorer
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, size=(20, 16, 16, 3), dtype=np.uint8)
    >>> y = np.arange(20) % 2
    >>> cnn = CNNScorer(max_epochs=1, random_state=0).fit(X, y)
    >>> cnn.predict_proba(X[:2]).shape, cnn.transform(X[:2]).dtype
    ((2, 2), dtype('float32'))
    >>> CNNScorer(output="embedding", max_epochs=1, random_state=0).fit_transform(X, y).shape
    (20, 64)
    """
    )

    _progress_desc = "CNN"

    _parameter_constraints = {
        **_TorchImageEstimator._parameter_constraints,
        "n_classes": [None, Interval(Integral, 2, None, closed="left")],
        "groups": [None, StrOptions(set(_GROUPINGS)), dict],
        "output": [StrOptions({"proba", "embedding"})],
        "hidden": [positive_int(MAX_WIDTH)],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "balance": [StrOptions({"sampler", "loss"}), None],
        "lr_schedule": [StrOptions({"one-cycle", "constant"})],
        "restore_best": ["boolean"],
    }

    def __init__(
        self,
        n_classes=None,
        *,
        groups=None,
        output="proba",
        channels=32,
        hidden=64,
        dropout=0.1,
        balance="sampler",
        augment=True,
        max_epochs=15,
        lr=3e-3,
        lr_schedule="one-cycle",
        batch_size=64,
        validation_fraction=0.1,
        restore_best=True,
        device="cpu",
        n_jobs=None,
        precision="float32",
        random_state=None,
        verbose=0,
    ):
        self.n_classes = n_classes
        self.groups = groups
        self.output = output
        self.channels = channels
        self.hidden = hidden
        self.dropout = dropout
        self.balance = balance
        self.augment = augment
        self.max_epochs = max_epochs
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.restore_best = restore_best
        self.device = device
        self.n_jobs = n_jobs
        self.precision = precision
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.classifier_tags.multi_class = True
        return tags

    # -- labels ---------------------------------------------------------------------------

    def _group_map(self):
        if self.groups is None:
            return None
        if isinstance(self.groups, str):
            return _GROUPINGS[self.groups]
        return _check_groups(self.groups)

    def _map_groups(self, y, group_map):
        lookup = {lab: name for name, labs in group_map.items() for lab in labs}
        unknown = sorted({v for v in y.tolist() if v not in lookup})
        if unknown:
            raise ValueError(
                f"y holds labels {unknown[:5]} that belong to no group of "
                f"groups={self.groups!r} (known labels: {sorted(lookup)}). Drop those images or "
                "pass groups=None."
            )
        return np.array([lookup[v] for v in y.tolist()], dtype=object)

    def _encode_labels(self, y):
        group_map = self._group_map()
        if group_map is not None:
            y = self._map_groups(y, group_map)
            classes = np.array(list(group_map), dtype=object)
            index = {c: i for i, c in enumerate(classes)}
            return classes, np.array([index[v] for v in y], dtype=np.int64)
        classes, codes = np.unique(y, return_inverse=True)
        return classes, codes.astype(np.int64)

    # -- fit ------------------------------------------------------------------------------

    @fit_context
    def fit(self, X, y=None):
        """Train the network on labelled images.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Training images, uint8 (0-255) or float in [0, 1]; height and width
            multiples of 16.
        y : array-like of shape (n_samples,)
            Labels (any hashable values; Galaxy10 codes with ``groups``).

        Returns
        -------
        self : CNNScorer
            The fitted estimator.
        """
        X = check_nn_images(X)
        if y is None:
            raise ValueError(
                "CNNScorer is supervised: fit(X, y) needs labels y. For unsupervised "
                "features use AEEncoder or VAEEncoder."
            )
        y = check_labels(y, len(X))
        classes, codes = self._encode_labels(y)
        n_present = len(np.unique(codes))
        if n_present < 2:
            raise ValueError(
                f"y has a single class ({classes[codes[0]]!r}); a classifier needs at least "
                "2 classes."
            )
        n_out = len(classes)
        if self.n_classes is not None and self.n_classes != n_out:
            raise ValueError(
                f"n_classes={self.n_classes} but y has {n_out} classes"
                f"{' (after grouping)' if self.groups is not None else ''}. "
                "Pass n_classes=None to infer it from y."
            )
        if len(X) < n_out:
            raise ValueError(
                f"Got {len(X)} images for {n_out} classes; training needs at least one image "
                "per class (and in practice many more). Pass more images or fewer classes."
            )

        monitor = "valid_acc" if self.balance is None else "valid_bacc"
        criterion_params = {}
        if self.balance == "loss":
            counts = np.bincount(codes, minlength=n_out).astype(np.float64)
            weights = np.where(counts > 0, len(codes) / (n_out * np.maximum(counts, 1)), 0.0)
            criterion_params["criterion__weight"] = torch.tensor(weights, dtype=torch.float32)

        self.classes_ = classes
        self.image_shape_ = tuple(X.shape[1:])
        return self._fit_net(
            X,
            codes,
            stratify=codes,
            criterion_params=criterion_params,
            restore_best=monitor if self.restore_best else False,
            one_cycle=self.lr_schedule == "one-cycle",
        )

    def _net_spec(self):
        return {
            "net_cls": _GalaxyNet,
            "module": CNNClassifierModule,
            "criterion": torch.nn.CrossEntropyLoss,
            "net_params": {"augment": self.augment, "record_accuracy": True},
            "balanced": self.balance == "sampler",
        }

    def _module_params(self):
        h, w, c = self.image_shape_
        return {
            "n_classes": len(self.classes_),
            "in_channels": c,
            "image_size": (h, w),
            "channels": self.channels,
            "hidden": self.hidden,
            "dropout": self.dropout,
        }

    # -- inference ------------------------------------------------------------------------

    def decision_function(self, X):
        """Class logits, float32 array of shape (n_samples, n_classes)."""
        X = self._validate_fitted(X)
        return self._infer(X, lambda m, x: m(x))

    def predict_proba(self, X):
        """Class probabilities, float32 array of shape (n_samples, n_classes)."""
        X = self._validate_fitted(X)
        # softmax of float32 logits (a no-op cast in float32; exact sums under bfloat16)
        return self._infer(X, lambda m, x: torch.softmax(m(x).float(), dim=1))

    def predict(self, X):
        """Most probable class of each image, shape (n_samples,)."""
        scores = self.decision_function(X)
        return self.classes_[np.argmax(scores, axis=1)]

    def embed(self, X):
        """Penultimate activations, float32 array of shape (n_samples, hidden)."""
        X = self._validate_fitted(X)
        return self._infer(X, lambda m, x: m.embed(x))

    def transform(self, X):
        """Search features: probabilities (``output="proba"``) or the embedding.

        Parameters
        ----------
        X : array-like of shape (n_samples, height, width, n_channels)
            Images of the fitted size.

        Returns
        -------
        features : ndarray of shape (n_samples, n_classes) or (n_samples, hidden)
            float32.
        """
        if self.output == "embedding":
            return self.embed(X)
        return self.predict_proba(X)

    def score(self, X, y, sample_weight=None):
        """Accuracy on ``(X, y)``; with ``groups``, ``y`` is mapped to groups first."""
        self._check_fitted()
        y = check_labels(y, len(check_nn_images(X)))
        group_map = self._group_map()
        if group_map is not None:
            y = self._map_groups(y, group_map)
        return super().score(X, y, sample_weight=sample_weight)

    def get_feature_names_out(self, input_features=None):
        """Output feature names: ``proba_<class>`` or ``embedding<i>``."""
        self._check_fitted()
        if self.output == "embedding":
            return np.array([f"embedding{i}" for i in range(self.hidden)], dtype=object)
        return np.array([f"proba_{c}" for c in self.classes_], dtype=object)


def _check_groups(groups):
    """``groups`` as given, once each value is a collection of labels and no label is in
    two groups (a string value would be read as its characters, an int is no collection)."""
    owner = {}
    for name, labels in groups.items():
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
            raise ValueError(
                f"groups[{name!r}] is {labels!r}; each group maps to a list or tuple of the "
                f"labels it holds, for example groups={{{name!r}: [{labels!r}]}}."
            )
        labels = list(labels)
        if not labels:
            raise ValueError(f"groups[{name!r}] is empty; give each group at least one label.")
        for lab in labels:
            if not isinstance(lab, Hashable):
                raise ValueError(f"groups[{name!r}] holds {lab!r}, which is not a label.")
            if lab in owner and owner[lab] != name:
                raise ValueError(
                    f"Label {lab!r} is in two groups, {owner[lab]!r} and {name!r}; each label "
                    "belongs to one group."
                )
            owner[lab] = name
    return groups
