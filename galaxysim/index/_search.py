"""SearchIndex: search a persisted index without reading the catalogue's pixels."""

import numbers
from pathlib import Path

import numpy as np

from galaxysim.index._format import (
    IDENTIFIERS,
    check_files,
    damaged,
    fingerprint,
    fingerprint_mismatch,
    read_manifest,
)
from galaxysim.index._steps import (
    APPROXIMATE,
    MODEL_CLASSES,
    prepare_steps,
    restore_state,
    split_steps,
)
from galaxysim.index._table import read_identifiers
from galaxysim.pipeline import METHODS, make_method_search
from galaxysim.utils.validation import check_image_shape, check_images

__all__ = ["SearchIndex"]


class SearchIndex:
    """A search index written by :func:`build_index`, opened for searching.

    Open one with :meth:`open`. The stored rows are memory-mapped, never copied or
    upcast: a search reads them in place, and the catalogue's pixels are read only for
    the neighbours shown (:meth:`neighbour_images`). A query goes through its method's
    recipe (:func:`galaxysim.pipeline.make_method_search`), rebuilt from the method's
    name, the saved model and the steps' saved state, then is searched by a
    :class:`~galaxysim.neighbors.NearestGalaxy` fitted on the stored rows (the result
    is the one of the recipe fitted on the catalogue in memory, ties included); for
    methods built with ``algorithm="ivf"`` or ``"hnsw"``, that ``NearestGalaxy`` is set
    to the algorithm and holds the saved faiss index. Models and searchers are loaded
    on a method's first search.

    Attributes
    ----------
    path : pathlib.Path
        The index folder.
    manifest : dict
        The index's ``manifest.json``.
    methods : tuple of str
        The methods indexed.
    n_samples : int
        Catalogue images indexed.
    image_shape : tuple of int
        ``(height, width, 3)`` of the framed images, which queries must have.
    identifiers : mapping of str to ndarray
        The identifier table, one entry per catalogue image, each column converted to
        NumPy when first read: ``index``, ``file`` (``""`` where absent), ``ra``,
        ``dec``, ``redshift``, ``pxscale`` (NaN where absent), ``label`` (-1 without
        labels) and ``label_name`` (``""`` without labels).
    target : ndarray of int or None
        The catalogue's labels (class codes), as ``open_catalogue`` gives them.
    target_names : ndarray of str or None
        Names of the label codes.
    catalogue : str
        Path of the indexed catalogue (read only by :meth:`neighbour_images`).
    """

    def __init__(self, path, manifest, identifiers, target, target_names, n_jobs):
        self.path = path
        self.manifest = manifest
        self.methods = tuple(manifest["methods"])
        self.n_samples = int(manifest["n_samples"])
        self.image_shape = tuple(int(s) for s in manifest["image_shape"])
        self.identifiers = identifiers
        self.target, self.target_names = target, target_names
        self.catalogue = manifest["catalogue"]["path"]
        self.n_jobs = n_jobs
        self._rows, self._searches = {}, {}
        self._opened = None

    def __repr__(self):
        return (
            f"SearchIndex({str(self.path)!r}: {self.n_samples} images, methods "
            f"{', '.join(self.methods)})"
        )

    @classmethod
    def open(cls, path, *, verify=False, n_jobs=None):
        """Open the index at ``path``, checking it first.

        Checked: the manifest (its format, and a format version this galaxysim reads),
        every file it lists present with its size, the row files' shapes and dtypes,
        and the identifier table; with ``verify``, also every file's SHA-256 (reads
        the whole index once).

        Parameters
        ----------
        path : str or path-like
            The index folder.
        verify : bool, default=False
            Also compare each file's content with the hash recorded at build time.
        n_jobs : int, default=None
            Threads of the search kernels and of faiss (see
            :class:`~galaxysim.neighbors.NearestGalaxy`).

        Returns
        -------
        index : SearchIndex

        Raises
        ------
        FileNotFoundError
            ``path`` is not a folder or holds no index (an interrupted build leaves
            none).
        ValueError
            The index is damaged (a missing, truncated or corrupt file), or was
            written with a newer format; the message says how to fix it.
        """
        path = Path(path).expanduser().absolute()
        manifest = read_manifest(path)
        check_files(path, manifest["files"], verify=verify)
        n = int(manifest["n_samples"])
        try:
            identifiers, target, names = read_identifiers(path / IDENTIFIERS, n)
        except Exception as exc:  # pyarrow's errors on a damaged file, or ours
            raise damaged(path, f"its {IDENTIFIERS} is unreadable ({exc})") from None
        index = cls(path, manifest, identifiers, target, names, n_jobs)
        for method in index.methods:
            if method not in METHODS:
                raise ValueError(
                    f"The search index {path} holds the method {method!r}, unknown to this "
                    f"galaxysim ({', '.join(METHODS)}); upgrade galaxysim."
                )
            index.embeddings(method)  # shapes and dtypes checked now
        return index

    # ------------------------------------------------------------ stored content
    def _method(self, method):
        if method is None:
            if len(self.methods) == 1:
                return self.methods[0]
            raise ValueError(f"Name the method to search: one of {', '.join(self.methods)}.")
        if method not in self.methods:
            raise ValueError(
                f"The index has no method {method!r}; it holds {', '.join(self.methods)}."
            )
        return method

    def embeddings(self, method=None):
        """The stored rows of a method, memory-mapped read-only.

        Parameters
        ----------
        method : str, default=None
            A method of the index (may be omitted when it holds one).

        Returns
        -------
        rows : numpy.memmap of shape (n_samples, n_features)
            uint8 pixels (pixel methods) or float32 rows (deep methods).
        """
        method = self._method(method)
        entry = self.manifest["methods"][method]
        rel = entry["rows"]
        if rel not in self._rows:
            try:
                rows = np.load(self.path / rel, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise damaged(self.path, f"its rows {rel} are unreadable ({exc})") from None
            want = (tuple(entry["shape"]), np.dtype(entry["dtype"]))
            if (rows.shape, rows.dtype) != want or rows.shape[0] != self.n_samples:
                raise damaged(
                    self.path,
                    f"its rows {rel} are {rows.shape} {rows.dtype}, the manifest says "
                    f"{want[0]} {want[1]}",
                )
            self._rows[rel] = rows
        return self._rows[rel]

    def _recipe(self, method):
        """The method's recipe with its transform steps in their fitted state."""
        entry = self.manifest["methods"][method]
        model = None
        if entry["model"] is not None:
            import galaxysim.nn

            cls = getattr(galaxysim.nn, MODEL_CLASSES[method])
            try:
                model = galaxysim.nn.load_model(self.path / entry["model"]["file"], kind=cls)
            except ValueError as exc:
                raise ValueError(
                    f"Cannot load the {method!r} model of the search index {self.path}: {exc}"
                ) from exc
        recipe = make_method_search(method, model=model, n_jobs=self.n_jobs)
        names = [name for name, _ in recipe.steps]
        if names != entry["steps"]:
            raise ValueError(
                f"The search index {self.path} was built with the {method!r} recipe "
                f"{entry['steps']}; this galaxysim's is {names}. Rebuild the index."
            )
        blockwise, fitted = split_steps(recipe)
        prepare_steps(recipe[:blockwise], self.image_shape)
        if sorted(fitted) != sorted(entry["fitted_steps"]):
            raise damaged(self.path, f"the {method!r} entry lacks the state of {fitted}")
        for name in fitted:
            try:
                restore_state(recipe.named_steps[name], entry["fitted_steps"][name])
            except (KeyError, TypeError, ValueError) as exc:
                raise damaged(self.path, f"the state of {method}'s {name} ({exc})") from None
        return recipe

    def search_pipeline(self, method=None):
        """The method's recipe, its search step fitted on the stored rows (what
        :meth:`kneighbors` searches with).

        Parameters
        ----------
        method : str, default=None
            A method of the index.

        Returns
        -------
        pipe : galaxysim.pipeline.SearchPipeline
            Its ``NearestGalaxy`` holds the memory-mapped rows, not a copy; for a
            method built with ``algorithm="ivf"`` or ``"hnsw"``, it is set to that
            algorithm and parameters and holds the saved faiss index.
        """
        method = self._method(method)
        if method not in self._searches:
            recipe = self._recipe(method)
            rows = self.embeddings(method)
            entry = self.manifest["methods"][method]
            if entry["algorithm"] in APPROXIMATE:
                index, params = self._approximate_index(method)
                recipe[-1].set_params(algorithm=entry["algorithm"], **params)
                recipe[-1].fit(rows, self.target, approximate_index=index)
            else:
                recipe[-1].fit(rows, self.target)
            self._searches[method] = recipe
        return self._searches[method]

    def _approximate_index(self, method):
        """The saved faiss index of a method, and its parameters as NearestGalaxy's (all
        but ``n_jobs``: a search runs on this SearchIndex's threads, not the build's)."""
        from galaxysim.neighbors import ApproximateIndex

        rel = self.manifest["methods"][method]["approximate"]["file"]
        try:
            index = ApproximateIndex.load(self.path / rel)
        except (OSError, ValueError) as exc:
            raise damaged(self.path, f"its faiss index {rel} is unreadable ({exc})") from None
        if (index.n_samples_, index.n_features_) != self.embeddings(method).shape:
            raise damaged(self.path, f"its faiss index {rel} does not match its rows")
        names = ("nlist", "nprobe", "M", "ef_construction", "ef_search", "random_state")
        return index, {name: getattr(index, name) for name in names}

    # ------------------------------------------------------------ search
    def _queries(self, images):
        X = check_images(images, name="query")
        check_image_shape(X, self.image_shape, name="query", fitted_on="the index's catalogue")
        return X

    def kneighbors(self, images, *, method=None, k=10, within=None, return_distance=True):
        """The ``k`` nearest catalogue images of each query, by one method.

        Parameters
        ----------
        images : array-like of shape (n_queries, height, width, 3) or (height, width, 3)
            Query images, framed like the catalogue's (:attr:`image_shape`), uint8 or
            float in [0, 1].
        method : str, default=None
            A method of the index (may be omitted when it holds one).
        k : int, default=10
            Neighbours per query.
        within : label or list of labels, default=None
            Search only the images with these labels (codes of :attr:`target`). With
            an approximate method, this is an exact search of those images' rows.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        dist : ndarray of shape (n_queries, k)
            Distances, ascending (only with ``return_distance=True``).
        ind : ndarray of shape (n_queries, k)
            Catalogue indices (rows of :attr:`identifiers`); equal distances are
            ordered by index.
        """
        method = self._method(method)
        X = self._queries(images)
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"k must be a positive int; got {k!r}.")
        return self.search_pipeline(method).kneighbors(X, k, return_distance, within=within)

    def nearest_per_class(self, images, *, method=None, return_distance=True):
        """The closest catalogue image of every label, for each query (exact search).

        Parameters
        ----------
        images : array-like of shape (n_queries, height, width, 3)
            Query images, framed like the catalogue's.
        method : str, default=None
            A method of the index.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        dist, ind : ndarray of shape (n_queries, n_classes)
            As :meth:`galaxysim.neighbors.NearestGalaxy.nearest_per_class`.
        """
        X = self._queries(images)
        return self.search_pipeline(method).nearest_per_class(X, return_distance=return_distance)

    # ------------------------------------------------------------ the catalogue
    def check_catalogue(self):
        """Open the indexed catalogue and check it is the one indexed (its fingerprint).

        Returns
        -------
        catalogue : Bunch
            The catalogue, opened lazily (:func:`~galaxysim.datasets.open_catalogue`).

        Raises
        ------
        FileNotFoundError
            The catalogue is gone.
        ValueError
            It changed since the index was built (its size, images, labels or
            identifiers).
        """
        from galaxysim.datasets import open_catalogue

        saved = self.manifest["catalogue"]
        labels = self.manifest["labels"]
        framing = self.manifest["framing"]
        try:
            cat = open_catalogue(
                saved["path"],
                crop=framing["crop"],
                image_size=framing["image_size"],
                labels_csv=labels["labels_csv"],
                label_column=labels["label_column"],
            )
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"The catalogue of the search index {self.path} is not found ({exc}). "
                "Searching needs only the index, but the neighbours' images are read from "
                "the catalogue: put it back at that path, or rebuild the index."
            ) from None
        problem = fingerprint_mismatch(saved, fingerprint(cat))
        if problem is not None:
            raise ValueError(
                f"The catalogue {saved['path']} changed since the search index {self.path} "
                f"was built ({problem}); its images would not be the ones indexed. Rebuild "
                "the index (galaxysim.index.build_index, or `galaxysim index`)."
            )
        return cat

    def neighbour_images(self, indices):
        """The framed images of some catalogue indices, read from the catalogue now.

        Only those images are read (the catalogue is opened and its fingerprint
        checked on the first call).

        Parameters
        ----------
        indices : array-like of int
            Catalogue indices, such as a row of :meth:`kneighbors`' ``ind``; any shape.

        Returns
        -------
        images : ndarray of shape indices.shape + (height, width, 3), uint8
        """
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu" and idx.size:
            raise TypeError(f"indices must be integers; got dtype {idx.dtype}.")
        if self._opened is None:
            self._opened = self.check_catalogue()
        flat = self._opened.take(idx.ravel().astype(np.int64))
        return flat.reshape(*idx.shape, *flat.shape[1:])
