"""Search pipelines, and one public recipe per search method.

scikit-learn's :class:`~sklearn.pipeline.Pipeline` has no ``kneighbors``. A
:class:`SearchPipeline` transforms the query through every step but the last and
hands it to the last step's ``kneighbors`` / ``nearest_per_class``. This is the one
way galaxysim reaches a search from a pipeline.

The recipes (:func:`make_pixel_search`, :func:`make_cnn_search`,
:func:`make_autoencoder_search`, and :func:`make_method_search` that picks one by
name) are the searches the ``galaxysim`` command runs, with the settings that were
measured best (see the benchmarks page of the documentation). They take framed images
(for example the output of ``Crop64``) and return an unfitted :class:`SearchPipeline`.
"""

import copy

import numpy as np
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "DEEP_METHODS",
    "METHODS",
    "PIXEL_METHODS",
    "SearchPipeline",
    "make_autoencoder_search",
    "make_cnn_search",
    "make_method_search",
    "make_pixel_search",
    "make_search_pipeline",
]

PIXEL_METHODS = ("mse", "maxabs")
DEEP_METHODS = ("cnn", "ae", "vae")
METHODS = PIXEL_METHODS + DEEP_METHODS
"""Names of the search methods of :func:`make_method_search` (and the CLI's ``--method``)."""


class SearchPipeline(Pipeline):
    """A :class:`~sklearn.pipeline.Pipeline` whose last step searches (``NearestGalaxy``).

    Parameters are those of :class:`~sklearn.pipeline.Pipeline`. The last step must
    have ``kneighbors`` (a search estimator such as
    :class:`~galaxysim.neighbors.NearestGalaxy`); ``fit`` and the search methods raise
    a ``TypeError`` otherwise, before any step is fitted.

    Examples
    --------
    >>> import numpy as np
    >>> from galaxysim.preprocessing import Crop64, PixelFlatten
    >>> from galaxysim.neighbors import NearestGalaxy
    >>> X = np.random.default_rng(0).integers(0, 256, (20, 80, 80, 3), dtype=np.uint8)
    >>> pipe = make_search_pipeline(Crop64(), PixelFlatten(), NearestGalaxy(n_neighbors=3))
    >>> dist, ind = pipe.fit(X).kneighbors(X[:2])
    >>> ind[:, 0]
    array([0, 1])
    """

    def _searcher(self, method="kneighbors"):
        """The last step, checked to have ``method`` (``kneighbors`` to be a search)."""
        last = self.steps[-1][1] if self.steps else None
        if not hasattr(last, "kneighbors") or not hasattr(last, method):
            what = repr(last) if last is None or isinstance(last, str) else type(last).__name__
            missing = "kneighbors" if not hasattr(last, "kneighbors") else method
            raise TypeError(
                f"A SearchPipeline ends with a search step, an estimator with kneighbors "
                f"such as galaxysim.neighbors.NearestGalaxy; its last step is {what}, which "
                f"has no {missing}. Add one, e.g. make_search_pipeline(..., NearestGalaxy())."
            )
        return last

    def fit(self, X, y=None, **params):
        """Check that the last step searches, then fit as :class:`~sklearn.pipeline.Pipeline`.

        A Dask array of images (for example :func:`galaxysim.datasets.open_catalogue`'s
        ``images``) stays lazy: the transform steps must be ones that learn nothing
        from the catalogue but its image shape (galaxysim's image transformers, and
        fitted models frozen in :class:`~sklearn.frozen.FrozenEstimator`, as the
        recipes of the ``"mse"``, ``"maxabs"`` and ``"cnn"`` methods have); they are
        fitted on the first image and applied block by block
        (:func:`~galaxysim.neighbors.embed_blocks`), and the search step is fitted on
        the resulting Dask array of rows, searched block by block. Steps that learn
        from every row (the ``StandardScaler`` of the autoencoder recipes, a model to
        train) are refused: a persisted search index
        (:func:`galaxysim.index.build_index`) fits them on its stored rows, and is the
        way to search a lazy catalogue with any method.

        Parameters
        ----------
        X : array-like or dask.array.Array
            Catalogue images.
        y : array-like, default=None
            Catalogue labels.
        **params : dict
            Passed as by :meth:`sklearn.pipeline.Pipeline.fit` (not with a Dask array).

        Returns
        -------
        self : SearchPipeline
        """
        from galaxysim.neighbors._dask import is_dask_array

        self._searcher()
        if is_dask_array(X):
            return self._fit_blockwise(X, y, params)
        return super().fit(X, y, **params)

    def _fit_blockwise(self, X, y, params):
        """Fit on a lazy catalogue: shape-only steps on one image, the search on the
        rows embedded block by block."""
        from galaxysim.neighbors import embed_blocks

        if params:
            raise TypeError(
                f"SearchPipeline.fit passes no fit parameters ({sorted(params)}) with a "
                "Dask array of images; fit the steps that need them in memory first."
            )
        transforms = [(n, s) for n, s in self.steps[:-1] if s not in (None, "passthrough")]
        learning = [name for name, step in transforms if not _learns_only_shape(step)]
        if learning:
            raise TypeError(
                f"SearchPipeline.fit on a Dask array applies the transform steps block by "
                f"block, so they may learn nothing but the image shape; {learning} learn "
                "from the whole catalogue. Index the lazy catalogue instead "
                "(galaxysim.index.build_index fits them on its stored rows), or freeze "
                "steps fitted in memory with sklearn.frozen.FrozenEstimator."
            )
        if not transforms:
            self._searcher().fit(X, y)
            return self
        sample = np.asarray(X[:1].compute())
        for _, step in transforms:  # the first image gives every image's shape
            sample = step.fit(sample, None).transform(sample)
        self._searcher().fit(embed_blocks(self[:-1], X), y)
        return self

    def _query(self, X):
        if X is None or len(self.steps) == 1:
            return X
        return self[:-1].transform(X)

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True, **kwargs):
        """Transform ``X`` through all steps but the last, then search.

        Parameters
        ----------
        X : array-like, default=None
            Query images (``None`` searches the catalogue itself).
        n_neighbors : int, default=None
            Number of neighbours.
        return_distance : bool, default=True
            Also return the distances.
        **kwargs : dict
            Passed to the last step's ``kneighbors`` (for example ``within=``).

        Returns
        -------
        dist, ind : ndarray of shape (n_queries, n_neighbors)
            As returned by :meth:`galaxysim.neighbors.NearestGalaxy.kneighbors`.
        """
        return self._searcher().kneighbors(self._query(X), n_neighbors, return_distance, **kwargs)

    def nearest_per_class(self, X, **kwargs):
        """Transform ``X``, then return the closest catalogue row of every label.

        Parameters
        ----------
        X : array-like
            Query images.
        **kwargs : dict
            Passed to the last step's ``nearest_per_class``.

        Returns
        -------
        dist, ind : ndarray of shape (n_queries, n_classes)
        """
        return self._searcher("nearest_per_class").nearest_per_class(self._query(X), **kwargs)

    def catalogue_labels(self):
        """Labels of the catalogue rows, as given to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_catalogue,)
        """
        return self._searcher("catalogue_labels").catalogue_labels()


def make_search_pipeline(*steps, memory=None, verbose=False):
    """Build a :class:`SearchPipeline` from steps, naming them like ``make_pipeline``.

    Parameters
    ----------
    *steps : estimators
        Transformers, then a search estimator such as ``NearestGalaxy``.
    memory : str or object with the joblib.Memory interface, default=None
        Cache of fitted transformers.
    verbose : bool, default=False
        Print the time of each step.

    Returns
    -------
    pipe : SearchPipeline
        Steps named after their lower-cased class (``crop64``, ``nearestgalaxy``), so
        ``GridSearchCV`` grids read ``{"nearestgalaxy__metric": [...]}``.

    Examples
    --------
    >>> from galaxysim.preprocessing import Crop64, PixelFlatten
    >>> from galaxysim.neighbors import NearestGalaxy
    >>> make_search_pipeline(Crop64(), PixelFlatten(), NearestGalaxy()).named_steps.keys()
    dict_keys(['crop64', 'pixelflatten', 'nearestgalaxy'])
    """
    plain = make_pipeline(*steps, memory=memory, verbose=verbose)
    pipe = SearchPipeline(plain.steps, memory=memory, verbose=verbose)
    pipe._searcher()  # refuse a pipeline without a search step now, not after fitting
    return pipe


def _learns_only_shape(step):
    """Whether fitting ``step`` on one image is fitting it on every image: galaxysim's
    image transformers (they learn the image shape at most) and frozen fitted models."""
    from sklearn.frozen import FrozenEstimator

    from galaxysim.preprocessing._transformers import _ImageTransformer

    return isinstance(step, FrozenEstimator | _ImageTransformer)


def _is_fitted(estimator):
    try:
        check_is_fitted(estimator)
    except Exception:  # NotFittedError, or an estimator without fitted attributes
        return False
    return True


def _given_or_new(model, class_name, params, what):
    """``model``, or ``galaxysim.nn.<class_name>(**params)`` when it is None (imported
    only then: galaxysim.pipeline does not import torch)."""
    if model is None:
        import galaxysim.nn

        return getattr(galaxysim.nn, class_name)(**params)
    if params:
        raise TypeError(f"Pass either {what} or its parameters, not both.")
    return model


def _model_step(model):
    """A fitted model is frozen (the pipeline's fit only indexes the catalogue);
    an unfitted one is trained by the pipeline's fit."""
    if _is_fitted(model):
        from sklearn.frozen import FrozenEstimator

        return FrozenEstimator(model)
    return model


def make_pixel_search(metric="mse", *, n_neighbors=10, n_jobs=None):
    """Pixel search: flattened images compared by ``metric``.

    Parameters
    ----------
    metric : {"mse", "maxabs"} or any metric of NearestGalaxy, default="mse"
        ``"mse"``: mean squared pixel difference; ``"maxabs"``: minimal maximum
        difference.
    n_neighbors : int, default=10
        Neighbours returned by ``kneighbors``.
    n_jobs : int, default=None
        Threads of the distance kernels (see :class:`~galaxysim.neighbors.NearestGalaxy`).

    Returns
    -------
    pipe : SearchPipeline
        ``PixelFlatten -> NearestGalaxy(metric)``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    >>> make_pixel_search("maxabs", n_neighbors=3).fit(X).kneighbors(X[:1])[1][0, 0]
    np.int64(0)
    """
    from galaxysim.neighbors import NearestGalaxy
    from galaxysim.preprocessing import PixelFlatten

    return make_search_pipeline(
        PixelFlatten(), NearestGalaxy(n_neighbors=n_neighbors, metric=metric, n_jobs=n_jobs)
    )


def make_cnn_search(cnn=None, *, n_neighbors=10, n_jobs=None, **cnn_params):
    """Search in the class-score space of a :class:`~galaxysim.nn.CNNScorer`.

    The query and the catalogue are compared by the Euclidean distance between their
    class probabilities. Needs labels to train the CNN.

    Parameters
    ----------
    cnn : CNNScorer, default=None
        A fitted CNN (frozen: fitting the pipeline only indexes the catalogue), an
        unfitted one (trained by the pipeline's ``fit(X, y)``), or ``None`` for
        ``CNNScorer(**cnn_params)``.
    n_neighbors : int, default=10
        Neighbours returned by ``kneighbors``.
    n_jobs : int, default=None
        Threads of the distance kernels.
    **cnn_params : dict
        Parameters of a new CNNScorer (only with ``cnn=None``).

    Returns
    -------
    pipe : SearchPipeline
        ``CNNScorer -> NearestGalaxy(metric="euclidean")``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    >>> y = np.arange(20) % 2
    >>> pipe = make_cnn_search(max_epochs=1, random_state=0, n_neighbors=3).fit(X, y)
    >>> pipe.kneighbors(X[:2])[1].shape
    (2, 3)
    """
    from galaxysim.neighbors import NearestGalaxy

    cnn = _given_or_new(cnn, "CNNScorer", cnn_params, "a CNNScorer")
    return make_search_pipeline(
        _model_step(cnn),
        NearestGalaxy(n_neighbors=n_neighbors, metric="euclidean", n_jobs=n_jobs),
    )


def make_autoencoder_search(encoder=None, *, n_neighbors=10, n_jobs=None, **encoder_params):
    """Search in the latent space of an autoencoder, by morphology rather than angle.

    The latent codes are averaged over the 8 flips and 90-degree rotations of each
    image (``orientation_invariant=True``), standardised on the catalogue
    (``StandardScaler``) and compared by cosine distance: every orientation of a
    galaxy gets the same code, and no latent dimension dominates by its scale. This
    ranks real catalogues better than plain codes by Euclidean distance (see the
    benchmarks page). Labels are not needed.

    Parameters
    ----------
    encoder : AEEncoder or VAEEncoder, default=None
        A fitted encoder (frozen), an unfitted one (trained by the pipeline's
        ``fit``), or ``None`` for ``AEEncoder(**encoder_params)``. The pipeline holds a
        shallow copy with ``orientation_invariant=True``: the caller's object is left
        as it is (and, if unfitted, stays unfitted; the fitted copy is the pipeline's
        first step).
    n_neighbors : int, default=10
        Neighbours returned by ``kneighbors``.
    n_jobs : int, default=None
        Threads of the distance kernels.
    **encoder_params : dict
        Parameters of a new AEEncoder (only with ``encoder=None``).

    Returns
    -------
    pipe : SearchPipeline
        ``encoder -> StandardScaler -> NearestGalaxy(metric="cosine")``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).integers(0, 256, (20, 16, 16, 3), dtype=np.uint8)
    >>> pipe = make_autoencoder_search(latent_dim=8, max_epochs=1, random_state=0)
    >>> pipe.fit(X).kneighbors(X[:2], n_neighbors=4)[1].shape
    (2, 4)
    """
    from sklearn.preprocessing import StandardScaler

    from galaxysim.neighbors import NearestGalaxy

    encoder = _given_or_new(encoder, "AEEncoder", encoder_params, "an encoder")
    encoder = copy.copy(encoder).set_params(orientation_invariant=True)
    return make_search_pipeline(
        _model_step(encoder),
        StandardScaler(),
        NearestGalaxy(n_neighbors=n_neighbors, metric="cosine", n_jobs=n_jobs),
    )


def make_method_search(method, *, model=None, n_neighbors=10, n_jobs=None, **model_params):
    """The search pipeline of one method by name (what ``galaxysim search --method`` runs).

    Parameters
    ----------
    method : {"mse", "maxabs", "cnn", "ae", "vae"}
        Pixel MSE, pixel minimal maximum difference, CNN class scores, autoencoder or
        VAE latents (see :func:`make_pixel_search`, :func:`make_cnn_search`,
        :func:`make_autoencoder_search`).
    model : estimator, default=None
        For the deep methods: a fitted or unfitted CNNScorer / AEEncoder /
        VAEEncoder; ``None`` creates one with ``model_params``.
    n_neighbors : int, default=10
        Neighbours returned by ``kneighbors``.
    n_jobs : int, default=None
        Threads of the distance kernels.
    **model_params : dict
        Parameters of the new deep model (``max_epochs``, ``random_state``, ...).

    Returns
    -------
    pipe : SearchPipeline

    Examples
    --------
    >>> make_method_search("mse").named_steps.keys()
    dict_keys(['pixelflatten', 'nearestgalaxy'])
    """
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method in PIXEL_METHODS:
        if model is not None or model_params:
            raise TypeError(f"The {method!r} method takes no model.")
        return make_pixel_search(method, n_neighbors=n_neighbors, n_jobs=n_jobs)
    if method == "cnn":
        return make_cnn_search(model, n_neighbors=n_neighbors, n_jobs=n_jobs, **model_params)
    model = _given_or_new(
        model, "AEEncoder" if method == "ae" else "VAEEncoder", model_params, "a model"
    )
    return make_autoencoder_search(model, n_neighbors=n_neighbors, n_jobs=n_jobs)
