"""Pipelines that reach the search methods of their last step.

scikit-learn's :class:`~sklearn.pipeline.Pipeline` has no ``kneighbors``. A
:class:`SearchPipeline` transforms the query through every step but the last and
hands it to the last step's ``kneighbors`` / ``nearest_per_class``. This is the one
way galaxysim reaches a search from a pipeline.
"""

from sklearn.pipeline import Pipeline, make_pipeline

__all__ = ["SearchPipeline", "make_search_pipeline"]


class SearchPipeline(Pipeline):
    """A :class:`~sklearn.pipeline.Pipeline` whose last step searches (``NearestGalaxy``).

    Parameters are those of :class:`~sklearn.pipeline.Pipeline`.

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

    def _query(self, X):
        return X if X is None else self[:-1].transform(X)

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
        return self._final_estimator.kneighbors(
            self._query(X), n_neighbors, return_distance, **kwargs
        )

    search = kneighbors

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
        return self._final_estimator.nearest_per_class(self._query(X), **kwargs)

    def catalogue_labels(self):
        """Labels of the catalogue rows, as given to ``fit``.

        Returns
        -------
        labels : ndarray of shape (n_catalogue,)
        """
        return self._final_estimator.catalogue_labels()


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
    return SearchPipeline(plain.steps, memory=memory, verbose=verbose)
