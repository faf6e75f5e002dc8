"""Persisted search indexes: a catalogue's search rows computed once, searched many times.

:func:`build_index` reads a catalogue lazily (:func:`galaxysim.datasets.open_catalogue`),
computes the rows of every search method block by block on Dask (threads, processes
or a ``distributed`` cluster) and writes them with everything a search needs into an
index folder; :meth:`SearchIndex.open` checks the folder and answers queries from it
without reading the catalogue's pixels (only the neighbours' images, for reports,
are read from the catalogue, after checking it is the one indexed).

Layout of an index folder::

    INDEX/
      manifest.json           format and format_version, creation time (UTC), versions
                              (galaxysim, Python, NumPy, scikit-learn, torch, faiss, dask,
                              pyarrow), the catalogue's fingerprint (path, kind, size in
                              bytes, shape, SHA-256 of the framed pixels of 16 images
                              spread over it and of its labels and identifiers), its
                              framing (crop, image_size) and label options, and per
                              method: metric, recipe steps, rows file, dtype and shape,
                              the state of the steps fitted on the rows (the
                              StandardScaler of "ae"/"vae"), algorithm, faiss parameters,
                              model class and parameters; and every file's size and
                              SHA-256
      identifiers.parquet     one row per catalogue image: index, file, ra, dec,
                              redshift, pxscale, label, label_name ("" / NaN / -1 where
                              the catalogue lacks them)
      rows/pixels.npy         (n, height * width * 3) uint8: the framed pixels, shared
                              by the pixel methods ("mse", "maxabs")
      rows/<method>.npy       (n, n_features) float32: a deep method's rows
      models/<method>.safetensors   the fitted model (galaxysim.nn.save_model)
      faiss/<method>.npz      the faiss index of a method built with "ivf" or "hnsw"
                              (ApproximateIndex.save)
      .galaxysim-index        the folder's marker (its files), written by the swap

The rows are NumPy ``.npy`` files rather than Zarr arrays because a search maps them
into memory and reads them in place: the exact kernels and faiss take them as they
are, with no decompression and no copy (a Zarr array would be decompressed into
memory first, a copy of all the rows, 2.4 GB for the pixels of 200,000 64x64 images).
They are written block by block at their byte offsets by the Dask workers, which
needs no locks: the workers must see the index's folder, as they see the catalogue.

An index is written as a unit, into a locked staging folder swapped in whole at the
end (``galaxysim.utils._staging.StagedFolder``): an interrupted build leaves no
index that :meth:`SearchIndex.open` accepts (and an earlier index at the same path as
it was), and a new build restarts from the beginning.

Examples
--------
>>> import os, tempfile
>>> import h5py, numpy as np
>>> from galaxysim.datasets import make_galaxies
>>> from galaxysim.index import SearchIndex, build_index
>>> from galaxysim.pipeline import make_method_search
>>> X, y = make_galaxies(40, image_size=32, random_state=0)
>>> d = tempfile.mkdtemp()
>>> with h5py.File(os.path.join(d, "catalogue.h5"), "w") as f:
...     _ = f.create_dataset("images", data=X)
...     _ = f.create_dataset("ans", data=y)
>>> path = build_index(os.path.join(d, "catalogue.h5"), "mse,maxabs", os.path.join(d, "index"),
...                    crop=None, image_size=None, block_size=16, verbose=0)
>>> index = SearchIndex.open(path)
>>> index
SearchIndex('.../index': 40 images, methods mse, maxabs)
>>> dist, ind = index.kneighbors(X[:2], method="mse", k=3)
>>> ind[:, 0]
array([0, 1])
>>> ref = make_method_search("mse").fit(X, y).kneighbors(X[:2], 3)
>>> bool((ind == ref[1]).all() and (dist == ref[0]).all())
True
>>> index.neighbour_images(ind[0]).shape, str(index.identifiers["label_name"][ind[0, 0]])
((3, 32, 32, 3), 'Round Smooth')
"""

from galaxysim.index._build import build_index
from galaxysim.index._search import SearchIndex

__all__ = ["SearchIndex", "build_index"]
