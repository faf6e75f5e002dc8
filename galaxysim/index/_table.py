"""The identifier table of an index: one Parquet row per catalogue image."""

import json
from collections.abc import Mapping

import numpy as np

from galaxysim.utils._optional import import_optional

COLUMNS = ("index", "file", "ra", "dec", "redshift", "pxscale", "label", "label_name")
"""Columns of ``identifiers.parquet``, always all present: ``file`` and ``label_name``
are empty strings, the coordinates NaN and ``label`` -1 where the catalogue lacks them."""

_FLOATS = ("ra", "dec", "redshift", "pxscale")
_META = b"galaxysim"


def _pyarrow(purpose):
    pa = import_optional("pyarrow", purpose)
    return pa, import_optional("pyarrow.parquet", purpose)


def write_identifiers(path, catalogue):
    """Write the identifiers and labels of an opened catalogue to ``path`` (Parquet)."""
    pa, pq = _pyarrow("Writing a search index")
    n = len(catalogue.index)
    target = catalogue.target
    names = catalogue.target_names
    columns = {"index": np.asarray(catalogue.index, dtype=np.int64)}
    columns["file"] = (
        pa.array(np.asarray(catalogue["file"]).tolist(), pa.string())
        if "file" in catalogue.identifiers
        else pa.array([""] * n, pa.string())
    )
    for k in _FLOATS:
        columns[k] = (
            np.asarray(catalogue[k], dtype=np.float64)
            if k in catalogue.identifiers
            else np.full(n, np.nan)
        )
    if target is None:
        columns["label"] = np.full(n, -1, dtype=np.int64)
        columns["label_name"] = pa.array([""] * n, pa.string())
    else:
        columns["label"] = np.asarray(target, dtype=np.int64)
        label_names = np.asarray([str(v) for v in names])[columns["label"]]
        columns["label_name"] = pa.array(label_names.tolist(), pa.string())
    meta = {
        "label_column": catalogue.label_column,
        "target_names": None if names is None else [str(v) for v in names],
    }
    table = pa.table(columns).replace_schema_metadata({_META: json.dumps(meta).encode()})
    pq.write_table(table, str(path))


class Identifiers(Mapping):
    """The columns of an index's identifier table, as NumPy arrays converted when first
    read (the table itself is memory-mapped).

    Keys are :data:`COLUMNS`; ``file`` and ``label_name`` are arrays of str.
    """

    def __init__(self, table):
        self._table = table
        self._columns = {}

    def __getitem__(self, name):
        if name not in COLUMNS:
            raise KeyError(name)
        if name not in self._columns:
            col = self._table.column(name)
            if name in ("file", "label_name"):
                self._columns[name] = np.asarray(col.to_pylist(), dtype=str)
            else:
                self._columns[name] = col.to_numpy()
        return self._columns[name]

    def __iter__(self):
        return iter(COLUMNS)

    def __len__(self):
        return len(COLUMNS)

    def __repr__(self):
        return f"<identifiers of {self._table.num_rows} images: {', '.join(COLUMNS)}>"


def read_identifiers(path, n_samples):
    """``(identifiers, target, target_names)`` of an index's table, checked against ``n``."""
    _, pq = _pyarrow("Reading a search index")
    table = pq.read_table(str(path), memory_map=True)
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"it lacks the columns {missing}")
    if table.num_rows != n_samples:
        raise ValueError(f"it has {table.num_rows} rows for {n_samples} catalogue images")
    meta = json.loads((table.schema.metadata or {}).get(_META, b"{}"))
    columns = Identifiers(table)
    if not np.array_equal(columns["index"], np.arange(n_samples)):
        raise ValueError("its index column is not 0..n-1 in order")
    names = meta.get("target_names")
    if names is None:
        return columns, None, None
    target = columns["label"]
    if target.min() < 0 or target.max() >= len(names):
        raise ValueError(f"its labels are not codes of its {len(names)} class names")
    return columns, target, np.asarray(names)
