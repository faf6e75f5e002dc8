"""Model files that cannot run code: the network's tensors in safetensors, the rest in JSON.

A file is one safetensors file. Its tensors are the module's state dict (``module.*``)
and the loss's (``criterion.*``: class weights). Its metadata holds one JSON document:
the format version, the galaxysim, torch and skorch versions, the estimator's class
name (one of :data:`_ESTIMATORS`, looked up in that table, never imported by name),
``get_params()``, the module's constructor arguments, the fitted attributes and the
caller's ``provenance`` (what the model was trained on; ``galaxysim train`` records its
training run and the catalogue's fingerprint there). Only JSON and tensors are read on
load; nothing is unpickled.
"""

import json
import numbers
import os

import numpy as np
import safetensors
import safetensors.torch
import skorch
import torch
from sklearn.utils.validation import check_is_fitted

import galaxysim
from galaxysim.nn._autoencoder import AEEncoder, VAEEncoder
from galaxysim.nn._cnn import CNNScorer
from galaxysim.nn._estimator import HISTORY_KEYS
from galaxysim.utils._io import atomic_write, check_regular_file

__all__ = ["load_model", "save_model"]

_FORMAT = 2
"""Version of the file layout (1 was a pickle, which is no longer read)."""

_METADATA_KEY = "galaxysim.model"

_PICKLE_MAGIC = b"GALAXYSIM-MODEL\n"
"""The first line of the earlier, pickle-based model files."""

_ESTIMATORS = {cls.__name__: cls for cls in (CNNScorer, AEEncoder, VAEEncoder)}
"""The estimators a model file can hold, by the name recorded in the file."""

_CLASS_KINDS = {"b", "i", "u", "f", "U", "O"}
"""dtype kinds of ``classes_`` that a model file stores: bools, ints, floats, strings
(and object arrays of those)."""


_PICKLE_HINT = (
    "Save other objects (pipelines, other estimators) with pickle or joblib, which, like "
    "scikit-learn's models, are for trusted input only: loading a pickle can run "
    "arbitrary code."
)


def _major_minor(version):
    parts = []
    for piece in version.split("+")[0].split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


# ---------------------------------------------------------------------------------------
# JSON encoding of parameters and fitted attributes


def _to_json(value, name):
    """JSON form of a parameter value: tuples and dicts tagged so they come back as such."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, tuple):
        return {"tuple": [_to_json(v, name) for v in value]}
    if isinstance(value, list):
        return [_to_json(v, name) for v in value]
    if isinstance(value, dict):
        return {"dict": [[_to_json(k, name), _to_json(v, name)] for k, v in value.items()]}
    raise ValueError(
        f"Cannot save {name}={value!r} in a model file (only None, bools, numbers, strings "
        "and lists, tuples and dicts of them). Set it to such a value with set_params "
        "(random_state to an int or None), or save the estimator with pickle or joblib."
    )


def _from_json(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        ((tag, items),) = value.items()
        if tag == "tuple" and isinstance(items, list):
            return tuple(_from_json(v) for v in items)
        if tag == "dict" and isinstance(items, list):
            out = {}
            for pair in items:
                if not (isinstance(pair, list) and len(pair) == 2):
                    break
                out[_from_json(pair[0])] = _from_json(pair[1])  # TypeError: unhashable key
            else:
                return out
    raise ValueError(f"unexpected value {value!r}")


def _mapping_from_json(doc):
    """A ``{name: value}`` document (parameters, module arguments)."""
    if not isinstance(doc, dict):
        raise ValueError(f"expected a mapping, got {doc!r}")
    return {str(k): _from_json(v) for k, v in doc.items()}


def _classes_to_json(classes):
    classes = np.asarray(classes)
    values = [v.item() if isinstance(v, np.generic) else v for v in classes.tolist()]
    if classes.dtype.kind not in _CLASS_KINDS or not all(
        isinstance(v, bool | int | float | str) for v in values
    ):
        raise ValueError(
            f"Cannot save classes_ of dtype {classes.dtype} in a model file: class labels "
            "must be bools, ints, floats or strings. Save the estimator with pickle or "
            "joblib instead."
        )
    return {"dtype": classes.dtype.str, "values": values}


def _classes_from_json(doc):
    dtype = np.dtype(doc["dtype"])
    values = doc["values"]
    if dtype.kind not in _CLASS_KINDS or not isinstance(values, list):
        raise ValueError(f"classes_ of dtype {dtype}")
    if dtype.itemsize > 4096:  # "<U500000000" would allocate 2 GB per label
        raise ValueError(f"classes_ of dtype {dtype}, wider than any label")
    if not all(isinstance(v, bool | int | float | str) for v in values):
        raise ValueError("classes_ must be bools, ints, floats or strings")
    if dtype.kind == "O":
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.array(values, dtype=dtype)


def _fitted_to_json(est):
    doc = {"image_shape_": list(est.image_shape_), "history_": est.history_}
    if isinstance(est, CNNScorer):
        doc["classes_"] = _classes_to_json(est.classes_)
        doc["best_epoch_"] = int(est.best_epoch_)
    return doc


def _fitted_from_json(est, doc):
    """Set the fitted attributes of ``est`` from ``doc``, checking their types."""
    shape = doc["image_shape_"]
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
    ):
        raise ValueError(f"image_shape_ {shape!r}")
    history = doc["history_"]
    if not isinstance(history, list) or not all(
        isinstance(row, dict)
        and set(row) <= set(HISTORY_KEYS)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in row.values())
        for row in history
    ):
        raise ValueError("history_")
    est.image_shape_ = tuple(shape)
    est.history_ = history
    if isinstance(est, CNNScorer):
        est.classes_ = _classes_from_json(doc["classes_"])
        best = doc["best_epoch_"]
        if not (isinstance(best, int) and not isinstance(best, bool) and best >= 1):
            raise ValueError(f"best_epoch_ {best!r}")
        est.best_epoch_ = best


# ---------------------------------------------------------------------------------------
# save


def _check_provenance(provenance):
    """``provenance`` as it reads back from JSON; refuses what JSON cannot hold."""
    if not isinstance(provenance, dict):
        raise TypeError(
            f"provenance must be a dict of JSON values; got {type(provenance).__name__}."
        )
    try:
        return json.loads(json.dumps(provenance, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"provenance must hold only JSON values (str, finite numbers, bools, None, "
            f"and lists and dicts with str keys of them): {exc}"
        ) from None


def _serialize(estimator, provenance=None):
    """The bytes of the model file of a fitted estimator."""
    params = {k: _to_json(v, k) for k, v in estimator.get_params(deep=False).items()}
    net = estimator.net_
    module_params = {k: _to_json(v, k) for k, v in net.get_params_for("module").items()}
    if module_params != {k: _to_json(v, k) for k, v in estimator._module_params().items()}:
        raise ValueError(
            f"The parameters of this {type(estimator).__name__} no longer match its network "
            "(set_params changed them after fit). Refit it, or set them back, before saving."
        )
    header = {
        "format": _FORMAT,
        "galaxysim": galaxysim.__version__,
        "torch": torch.__version__,
        "skorch": skorch.__version__,
        "estimator": type(estimator).__name__,
        "params": params,
        "module": module_params,
        "fitted": _fitted_to_json(estimator),
    }
    if provenance is not None:
        header["provenance"] = provenance
    tensors = {}
    for prefix, part in (("module", net.module_), ("criterion", net.criterion_)):
        for key, t in part.state_dict().items():
            tensors[f"{prefix}.{key}"] = t.detach().to("cpu").contiguous()
    metadata = {_METADATA_KEY: json.dumps(header, allow_nan=True)}
    return safetensors.torch.save(tensors, metadata=metadata)


def save_model(estimator, path, *, provenance=None):
    """Save a fitted CNNScorer, AEEncoder or VAEEncoder to a model file, atomically.

    The file (conventionally ``*.safetensors``) holds the network's weights as
    safetensors tensors and, as JSON, the estimator's class, parameters and fitted
    attributes, the galaxysim, torch and skorch versions and ``provenance``;
    :func:`load_model` checks the galaxysim and torch versions (skorch's is recorded
    for provenance). Loading it runs no code from the file. An interrupted save leaves
    any previous file at ``path`` intact.

    Pipelines and other estimators are saved with ``pickle`` or ``joblib``
    instead; like scikit-learn's, those files are for trusted input only, since
    unpickling can run arbitrary code.

    Parameters
    ----------
    estimator : CNNScorer, AEEncoder or VAEEncoder
        A fitted estimator, whose parameters are ``None``, bools, numbers, strings or
        tuples, lists and dicts of them (an int or ``None`` as ``random_state``).
    path : str or path-like
        Destination file.
    provenance : dict, default=None
        What the model was trained on, recorded as JSON in the file's header under
        ``"provenance"`` (strings, finite numbers, bools, ``None``, and lists and
        dicts of them; tuples read back as lists). ``galaxysim train`` stores its
        training run and the catalogue's fingerprint here.

    Returns
    -------
    path : str
        The path written.

    Raises
    ------
    TypeError
        ``estimator`` is not one of the three estimators, or ``provenance`` is not a
        dict.
    ValueError
        A parameter or ``provenance`` cannot be stored as JSON.
    sklearn.exceptions.NotFittedError
        ``estimator`` is not fitted.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from galaxysim.nn import AEEncoder
    >>> X = np.random.default_rng(0).integers(0, 256, (16, 16, 16, 3), dtype=np.uint8)
    >>> ae = AEEncoder(latent_dim=4, max_epochs=1, random_state=0).fit(X)
    >>> path = save_model(ae, os.path.join(tempfile.mkdtemp(), "ae.safetensors"))
    >>> bool(np.array_equal(load_model(path).transform(X), ae.transform(X)))
    True
    """
    if type(estimator) not in _ESTIMATORS.values():
        raise TypeError(
            f"save_model writes CNNScorer, AEEncoder and VAEEncoder models; got "
            f"{type(estimator).__name__}. {_PICKLE_HINT}"
        )
    check_is_fitted(estimator, "net_")
    if os.path.isdir(path):  # else the final rename fails, naming a temporary file
        raise IsADirectoryError(
            f"Model file {path} is a folder; pass a file path, for example "
            f"{os.path.join(path, type(estimator).__name__.lower() + '.safetensors')}."
        )
    if provenance is not None:
        provenance = _check_provenance(provenance)
    data = _serialize(estimator, provenance)
    with atomic_write(path, "wb") as f:
        f.write(data)
    return str(path)


# ---------------------------------------------------------------------------------------
# load


def _not_a_model(path, why):
    return ValueError(
        f"{path} is not a galaxysim model file ({why}). Save models with "
        "galaxysim.nn.save_model or `galaxysim train`."
    )


def _read(path, *, tensors=True):
    """The header (a dict) and, with ``tensors``, the tensors (a dict) of a model file."""
    check_regular_file(path, "Model file")  # a FIFO would block the read
    with open(path, "rb") as f:
        start = f.read(len(_PICKLE_MAGIC))
    if start == _PICKLE_MAGIC:
        raise ValueError(
            f"{path} is a galaxysim model file of the earlier, pickle-based format; it is "
            "not loaded, because unpickling a file can run arbitrary code. Retrain the "
            "model with this version (`galaxysim train ...` or save_model), which writes "
            "a .safetensors file."
        )
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            header = _parse_header(metadata, path)
            data = {k: handle.get_tensor(k) for k in handle.keys()} if tensors else None  # noqa: SIM118
    except ValueError:
        raise
    except Exception as exc:  # the library's SafetensorError: truncated or foreign
        raise _not_a_model(path, f"unreadable as safetensors: {exc}") from exc
    return header, data


def _parse_header(metadata, path):
    text = metadata.get(_METADATA_KEY)
    if text is None:
        raise _not_a_model(path, "a safetensors file without galaxysim's metadata")
    try:
        header = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(
            f"{path} has a corrupt galaxysim header; retrain with `galaxysim train`."
        ) from exc
    if not isinstance(header, dict):
        raise ValueError(f"{path} has a corrupt galaxysim header; retrain with `galaxysim train`.")
    return header


def read_model_header(path):
    """Return the JSON header of a model file (versions, class, parameters, provenance),
    unchecked.

    Raises
    ------
    ValueError
        ``path`` is not a galaxysim model file.
    """
    return _read(path, tensors=False)[0]


def _check_versions(header, path):
    fix = "Retrain it with this version (`galaxysim train ...`) or install the versions it names."
    if header.get("format") != _FORMAT:
        raise ValueError(
            f"{path} uses model file format {header.get('format')!r}; this galaxysim reads "
            f"format {_FORMAT}. {fix}"
        )
    saved, current = str(header.get("galaxysim", "?")), galaxysim.__version__
    if _major_minor(saved) != _major_minor(current):
        raise ValueError(
            f"{path} was saved by galaxysim {saved}, but galaxysim {current} is installed; "
            f"models are only compatible within one minor version. {fix} "
            f"(pip install 'galaxysim=={saved}')."
        )
    saved_torch = str(header.get("torch", "0"))
    need = saved_torch.split("+")[0]
    if _major_minor(saved_torch) > _major_minor(torch.__version__):
        raise ValueError(
            f"{path} was saved with torch {saved_torch}, newer than the installed torch "
            f"{torch.__version__}. Upgrade torch (pip install 'torch>={need}') "
            "or retrain the model with `galaxysim train`."
        )


def _rebuild(header, tensors, path):
    name = header.get("estimator")
    cls = _ESTIMATORS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(
            f"{path} names the estimator {name!r}; galaxysim model files hold one of "
            f"{', '.join(sorted(_ESTIMATORS))}."
        )
    try:
        params = _mapping_from_json(header["params"])
        if set(params) != set(cls().get_params()):
            raise ValueError("the parameters are not those of this galaxysim version")
        est = cls(**params)
        est._validate_params()
        _fitted_from_json(est, header["fitted"])
        module_params = _mapping_from_json(header["module"])
        if module_params != est._module_params():
            raise ValueError("the network's arguments do not match the parameters")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path} holds an invalid {name} ({exc}); retrain with `galaxysim train`."
        ) from exc
    states = {"module": {}, "criterion": {}}
    for key, t in tensors.items():
        prefix, _, rest = key.partition(".")
        if prefix not in states or not rest:
            raise ValueError(f"{path} holds an unexpected tensor {key!r}.")
        states[prefix][rest] = t
    # the tensors must fit the network before it is allocated
    with torch.device("meta"):
        expected = est._net_spec()["module"](**module_params).state_dict()
    expected_criterion = {}
    if isinstance(est, CNNScorer) and est.balance == "loss":
        expected_criterion["weight"] = torch.empty(len(est.classes_))
    for part, want in (("module", expected), ("criterion", expected_criterion)):
        got = {k: (tuple(v.shape), v.dtype) for k, v in states[part].items()}
        if got != {k: (tuple(v.shape), v.dtype) for k, v in want.items()}:
            raise ValueError(
                f"{path}: the saved {part} tensors do not fit a {name} of these parameters; "
                "retrain with `galaxysim train`."
            )
    return est._restore_net(states["module"], states["criterion"])


def _check_kind(header, kind, path):
    if kind is None:
        return
    if kind not in _ESTIMATORS.values():
        raise TypeError(
            f"kind must be one of {', '.join(sorted(_ESTIMATORS))} (the class, not a name); "
            f"got {kind!r}."
        )
    found = header.get("estimator")
    if found != kind.__name__:
        found = found if isinstance(found, str) and found in _ESTIMATORS else repr(found)
        raise ValueError(
            f"{path} holds {_a(found)}, not the {kind.__name__} wanted here: is it another "
            f"model's file saved under this name? Use {_a(kind.__name__)} file, or retrain "
            "it (`galaxysim train`)."
        )


def _a(name):
    return f"{'an' if name[:1] in 'AEIOU' else 'a'} {name}"


def load_model(path, *, kind=None):
    """Load a model saved by :func:`save_model`, checking the recorded versions first.

    Only tensors and JSON are read: the estimator class comes from a fixed table of
    galaxysim's deep estimators, its parameters are validated, and its network is
    rebuilt as ``fit`` builds it before the saved weights are loaded into it. The
    loaded model gives bitwise the same outputs as the saved one.

    Parameters
    ----------
    path : str or path-like
        A regular file written by :func:`save_model`.
    kind : {CNNScorer, AEEncoder, VAEEncoder}, default=None
        The class the file must hold (checked before anything but the header is
        read); ``None`` accepts any of the three.

    Returns
    -------
    estimator : CNNScorer, AEEncoder or VAEEncoder
        The fitted estimator.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    IsADirectoryError
        ``path`` is a folder.
    ValueError
        ``path`` is a named pipe, socket or device (refused before it is opened), or
        not a galaxysim model file (truncated, foreign, or of the earlier pickle-based
        format), holds another class than ``kind`` or an unknown one, holds invalid
        parameters or weights, or was saved by an incompatible galaxysim version
        (another minor version) or a newer torch; the message names the fix.
    TypeError
        ``kind`` is not one of the three classes.

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> with open(p, "w") as f:
    ...     _ = f.write("not a model")
    >>> load_model(p)
    Traceback (most recent call last):
    ...
    ValueError: ...notes.txt is not a galaxysim model file (unreadable as safetensors: ...
    """
    header, _ = _read(path, tensors=False)  # metadata only: nothing else is read before
    _check_versions(header, path)  # the header, the versions and the kind are checked
    _check_kind(header, kind, path)
    header, tensors = _read(path)
    try:
        return _rebuild(header, tensors, path)
    except ValueError:
        raise
    except Exception as exc:  # a header that passed the checks but builds no network
        raise ValueError(f"{path} holds a model that cannot be rebuilt: {exc}") from exc
