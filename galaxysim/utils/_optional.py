"""Optional dependencies (the ``dask`` and ``faiss`` extras), imported when first needed.

The ``dask`` extra holds Dask, ``distributed``, zarr and pyarrow (search indexes).

``import galaxysim`` never imports them, so the package works without the extras; the
functions that need one import it through :func:`import_optional`, which names the
extra to install when it is missing.
"""

import importlib

__all__ = ["import_optional"]

_EXTRA = {
    "dask": "dask",
    "dask.array": "dask",
    "distributed": "dask",
    "pyarrow": "dask",
    "pyarrow.parquet": "dask",
    "faiss": "faiss",
    "fastapi": "serve",
    "uvicorn": "serve",
    "python_multipart": "serve",
}


def import_optional(name, purpose):
    """Import the module ``name`` of an optional extra, or raise a helpful ImportError.

    Parameters
    ----------
    name : str
        Module to import (``"dask"``, ``"dask.array"``, ``"faiss"``, ...).
    purpose : str
        What needs it, for the message (``"open_catalogue"``).

    Returns
    -------
    module : module

    Raises
    ------
    ImportError
        The module is not installed; the message names the extra to install.

    Examples
    --------
    >>> import_optional("no_such_module_xyz", "this example")
    Traceback (most recent call last):
    ...
    ImportError: this example needs the optional package no_such_module_xyz...
    """
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = _EXTRA.get(name)
        how = (
            f"pip install galaxysim[{extra}]"
            if extra
            else f"pip install {name.split('.', maxsplit=1)[0]}"
        )
        raise ImportError(
            f"{purpose} needs the optional package {name}, which is not installed "
            f"({exc}). Install it with: {how}"
        ) from exc
