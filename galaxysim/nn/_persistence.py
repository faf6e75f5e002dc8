"""Save and load fitted models with their galaxysim and torch versions checked on load.

File layout: one magic line, one JSON header line (versions), then the joblib pickle of
the estimator. The header is read and checked *before* anything is unpickled, so an
incompatible file gives a clear message instead of an obscure unpickling error.
"""

import json

import joblib
import skorch
import torch

import galaxysim
from galaxysim.utils._io import atomic_write

__all__ = ["load_model", "save_model"]

_MAGIC = b"GALAXYSIM-MODEL\n"
_FORMAT = 1


def _major_minor(version):
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def save_model(estimator, path):
    """Save a fitted estimator (or pipeline) to ``path`` atomically.

    The file records the galaxysim, torch and skorch versions; :func:`load_model`
    checks them. An interrupted save leaves any previous file at ``path`` intact.

    Parameters
    ----------
    estimator : object
        A fitted galaxysim estimator or a pipeline containing one.
    path : str or path-like
        Destination file (conventionally ``*.joblib``).

    Returns
    -------
    path : str
        The path written.

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn.preprocessing import FunctionTransformer
    >>> p = os.path.join(tempfile.mkdtemp(), "model.joblib")
    >>> _ = save_model(FunctionTransformer(), p)
    >>> type(load_model(p)).__name__
    'FunctionTransformer'
    """
    header = {
        "format": _FORMAT,
        "galaxysim": galaxysim.__version__,
        "torch": torch.__version__,
        "skorch": skorch.__version__,
        "estimator": type(estimator).__name__,
    }
    with atomic_write(path, "wb") as f:
        f.write(_MAGIC)
        f.write(json.dumps(header).encode() + b"\n")
        joblib.dump(estimator, f)
    return str(path)


def read_model_header(path):
    """Return the version header of a saved model without unpickling it.

    Raises
    ------
    ValueError
        ``path`` is not a galaxysim model file.
    """
    with open(path, "rb") as f:
        return _read_header(f, path)


def _read_header(f, path):
    magic = f.read(len(_MAGIC))
    if magic != _MAGIC:
        raise ValueError(
            f"{path} is not a galaxysim model file (it lacks the galaxysim header). "
            "Save models with galaxysim.nn.save_model or `galaxysim train`."
        )
    try:
        return json.loads(f.readline().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path} has a corrupt galaxysim header; retrain with `galaxysim train`."
        ) from exc


def _check_versions(header, path):
    fix = "Retrain it with this version (`galaxysim train ...`) or install the versions it names."
    if header.get("format") != _FORMAT:
        raise ValueError(
            f"{path} uses model file format {header.get('format')!r}; this galaxysim reads "
            f"format {_FORMAT}. {fix}"
        )
    saved, current = header.get("galaxysim", "?"), galaxysim.__version__
    if _major_minor(saved) != _major_minor(current):
        raise ValueError(
            f"{path} was saved by galaxysim {saved}, but galaxysim {current} is installed; "
            f"models are only compatible within one minor version. {fix} "
            f"(pip install 'galaxysim=={saved}')."
        )
    saved_torch = header.get("torch", "0")
    need = saved_torch.split("+")[0]
    if _major_minor(saved_torch) > _major_minor(torch.__version__):
        raise ValueError(
            f"{path} was saved with torch {saved_torch}, newer than the installed torch "
            f"{torch.__version__}. Upgrade torch (pip install 'torch>={need}') "
            "or retrain the model with `galaxysim train`."
        )


def load_model(path):
    """Load a model saved by :func:`save_model`, checking the recorded versions first.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`save_model`.

    Returns
    -------
    estimator : object
        The fitted estimator or pipeline.

    Raises
    ------
    ValueError
        The file is not a galaxysim model, or was saved by an incompatible galaxysim
        version (another minor version) or a newer torch; the message names the fix.
    """
    with open(path, "rb") as f:
        header = _read_header(f, path)
        _check_versions(header, path)
        return joblib.load(f)
