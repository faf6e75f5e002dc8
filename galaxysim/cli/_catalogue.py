"""The catalogue of a command and the queries that name its members.

:func:`load_catalogue` reads ``--catalog`` (the built-in catalogue, a Galaxy10 HDF5 file
or an image folder) into a :class:`Catalogue`: the framed images, the labels and what
identifies each row to a user (its index, its file relative to the folder, ``ra``,
``dec`` and ``redshift`` where the catalogue has them).

A query may name a catalogue member instead of an image (:func:`find_member`):
``index:N`` (row N, from 0), ``file:NAME`` (a file of a folder catalogue, by relative
path or by name when that is unique) or ``radec:RA,DEC`` (degrees: the catalogue galaxy
nearest to that position on the sky, within ``--radec-tol`` arcseconds).
"""

import dataclasses
import difflib
import math
from pathlib import Path, PurePosixPath

import numpy as np

from galaxysim.cli._checks import (
    NO_LABELS,
    WHOLE_FRAME,
    UserError,
    parse_index,
    parse_radec,
)

__all__ = ["Catalogue", "find_member", "load_catalogue", "resolve_label", "separation_arcsec"]

DEFAULT_RADEC_TOL = 3.0
"""Default ``--radec-tol``, arcseconds: about a seeing disk, a few DECaLS/SDSS pixels."""

_SHOWN = 5  # close matches or candidates quoted in a message


@dataclasses.dataclass
class Catalogue:
    """The catalogue of a command: images, labels and what identifies each row.

    Attributes
    ----------
    images : ndarray of shape (n, size, size, 3)
        The framed images.
    target : ndarray of shape (n,) or None
        Integer labels, ``None`` without labels.
    label_names : list of str
        Names of the labels (``label_names[k]`` names label ``k``); empty without.
    description : str
        One line for tables and reports.
    files : ndarray of str or None
        Each image's path relative to a folder catalogue; ``None`` for files.
    ra, dec, redshift : ndarray of float or None
        Per row (degrees; NaN where a galaxy lacks it), ``None`` where the catalogue
        has no such column.
    no_labels : str
        Why there are no labels, for messages (empty when there are).
    """

    images: np.ndarray
    target: np.ndarray | None
    label_names: list
    description: str
    files: np.ndarray | None = None
    ra: np.ndarray | None = None
    dec: np.ndarray | None = None
    redshift: np.ndarray | None = None
    no_labels: str = ""

    def __len__(self):
        return len(self.images)

    def label(self, i):
        """The label name of row ``i`` (``-`` without labels)."""
        if self.target is None:
            return "-"
        v = int(self.target[i])
        return self.label_names[v] if 0 <= v < len(self.label_names) else str(v)

    def identifiers(self, indices):
        """``{"file": [...], "ra": [...], ...}`` of rows ``indices``: the
        :class:`~galaxysim.report.SearchResult` identifiers the catalogue has."""
        indices = np.asarray(indices, dtype=np.intp)
        columns = {"file": self.files, "ra": self.ra, "dec": self.dec, "redshift": self.redshift}
        return {k: v[indices].tolist() for k, v in columns.items() if v is not None}

    def describe(self, i):
        """``galaxy 12 (images/x.jpeg, ra 150.100000, dec 2.200000, Spiral)``."""
        ids = {k: v[0] for k, v in self.identifiers([i]).items()}
        parts = [ids["file"]] if "file" in ids else []
        parts += [
            f"{k} {ids[k]:.6f}" if k != "redshift" else f"z {ids[k]:.4f}"
            for k in ("ra", "dec", "redshift")
            if k in ids and not math.isnan(ids[k])
        ]
        if self.target is not None:
            parts.append(self.label(i))
        return f"galaxy {i}" + (f" ({', '.join(parts)})" if parts else "")


def _column(bunch, key):
    """A float column of a Galaxy10 Bunch, or None when the file lacks it (all NaN)."""
    values = bunch.get(key)
    if values is None:
        return None
    values = np.asarray(values, dtype=np.float64)
    return None if np.isnan(values).all() else values


def load_catalogue(args):
    """The :class:`Catalogue` of ``--catalog`` (the built-in one when not given)."""
    from galaxysim import GALAXY10_CLASSES
    from galaxysim.datasets import load_galaxy10, load_image_folder, make_galaxies

    verbose = not args.quiet
    crop = None if args.crop == WHOLE_FRAME else args.crop
    if args.catalogue is None:
        X, y = make_galaxies(args.n_catalogue, image_size=args.image_size, random_state=args.seed)
        desc = f"built-in procedural catalogue ({args.n_catalogue} galaxies, seed {args.seed})"
        return Catalogue(X, y, list(GALAXY10_CLASSES), desc)
    path = Path(args.catalogue)
    if not path.exists():
        raise UserError(f"catalogue {path} does not exist.")
    if path.is_dir():
        no_csv = args.labels_csv == NO_LABELS
        bunch = load_image_folder(
            path,
            labels_csv=False if no_csv else args.labels_csv,
            label_column=args.label_column,
            crop=crop,
            image_size=args.image_size,
            on_error=args.on_error,
            max_pixels=args.max_pixels,
            allow_outside=args.allow_outside,
            encoding=args.encoding,
            n_jobs=-1,  # reading and decoding release the GIL: use every core
            verbose=verbose,
        )
        files = bunch.files
        columns = {}
        no_labels = (
            "--labels-csv none"
            if no_csv
            else f"{path} has no labels (give --labels-csv / --label-column)"
        )
    else:
        bunch = load_galaxy10(
            path,
            crop=64 if args.crop is None else crop,
            image_size=args.image_size,
            verbose=verbose,
        )
        files = None
        columns = {k: _column(bunch, k) for k in ("ra", "dec", "redshift")}
        no_labels = f"{path} has no 'ans' dataset"
    labelled = bunch.target is not None
    return Catalogue(
        images=bunch.images,
        target=bunch.target,
        label_names=[str(n) for n in bunch.target_names] if labelled else [],
        description=f"{path} ({len(bunch.images)} images)",
        files=files,
        no_labels="" if labelled else no_labels,
        **columns,
    )


def resolve_label(text, names, labels):
    """A label given by name (case-insensitive) or number -> label value."""
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is not None and value in set(np.unique(labels).tolist()):
        return value
    raise UserError(f"unknown label {text!r}; the catalogue has: {', '.join(names)}.")


# ------------------------------------------------------------------ members
def separation_arcsec(ra1, dec1, ra2, dec2):
    """Great-circle separation in arcseconds of positions given in degrees (haversine).

    Examples
    --------
    >>> round(float(separation_arcsec(10.0, 0.0, 10.0, 1 / 3600)), 6)
    1.0
    >>> round(float(separation_arcsec(359.9999, 0.0, 0.0001, 0.0)), 3)  # across RA 0
    0.72
    """
    ra1, dec1, ra2, dec2 = (
        np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2)
    )
    h = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))) * 3600.0


def _by_index(text, catalogue, option):
    i = parse_index(text, option)
    if i >= len(catalogue):
        raise UserError(
            f"{option} {text}: the catalogue has {len(catalogue)} galaxies (index 0 to "
            f"{len(catalogue) - 1})."
        )
    return i


def _by_file(text, catalogue, option):
    name = text[len("file:") :].strip().replace("\\", "/")
    if catalogue.files is None:
        raise UserError(
            f"{option} {text}: this catalogue ({catalogue.description}) has no file names; "
            "file: queries name an image of a folder catalogue. Use index:N"
            + (" or radec:RA,DEC." if catalogue.ra is not None else ".")
        )
    while name.startswith("./"):
        name = name[2:]
    files = catalogue.files.tolist()
    if name in files:
        return files.index(name)
    hits = [i for i, f in enumerate(files) if f.endswith("/" + name)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        shown = ", ".join(files[i] for i in hits[:_SHOWN])
        more = f" and {len(hits) - _SHOWN} more" if len(hits) > _SHOWN else ""
        raise UserError(
            f"{option} {text} is ambiguous: {len(hits)} catalogue files are named so "
            f"({shown}{more}); give the path relative to the folder, e.g. file:{files[hits[0]]}."
        )
    by_name = {}
    for f in files:
        by_name.setdefault(PurePosixPath(f).name, f)
    close = difflib.get_close_matches(name, files, n=_SHOWN, cutoff=0.6)
    close += [by_name[n] for n in difflib.get_close_matches(name, list(by_name), n=_SHOWN)]
    close = list(dict.fromkeys(close))[:_SHOWN]
    hint = (
        f"close matches: {', '.join(close)}"
        if close
        else f"its files are named like {', '.join(files[:3])}"
    )
    raise UserError(f"{option} {text}: no such file in the catalogue; {hint}.")


def _by_radec(text, catalogue, option, tolerance):
    ra, dec = parse_radec(text, option)
    if catalogue.ra is None or catalogue.dec is None:
        raise UserError(
            f"{option} {text}: this catalogue ({catalogue.description}) has no ra/dec "
            "columns (a Galaxy10 DECaLS file has them); use index:N"
            + (" or file:NAME." if catalogue.files is not None else ".")
        )
    sep = separation_arcsec(ra, dec, catalogue.ra, catalogue.dec)
    sep = np.where(np.isnan(sep), np.inf, sep)
    i = int(np.argmin(sep))  # the first of equals: the lower index
    if not np.isfinite(sep[i]):
        raise UserError(f"{option} {text}: no catalogue galaxy has a position (ra/dec all NaN).")
    if sep[i] > tolerance:
        raise UserError(
            f"{option} {text}: no catalogue galaxy within --radec-tol {tolerance:g} arcsec; "
            f"the nearest is index {i} (ra {catalogue.ra[i]:.6f}, dec {catalogue.dec[i]:.6f}) "
            f"at {_arcsec(sep[i])}. Check the coordinates, or widen --radec-tol."
        )
    return i


def _arcsec(value):
    if value < 60:
        return f"{value:.2f} arcsec"
    if value < 3600:
        return f"{value / 60:.2f} arcmin"
    return f"{value / 3600:.3f} degrees"


def find_member(text, catalogue, *, option="--query", radec_tol=DEFAULT_RADEC_TOL):
    """The catalogue row that ``index:N``, ``file:NAME`` or ``radec:RA,DEC`` names.

    Raises :class:`UserError` naming the option for a row out of range, an unknown or
    ambiguous file (with close matches), a position with no galaxy within
    ``radec_tol`` arcsec (with the nearest one and its separation), or a catalogue
    without file names or positions.
    """
    if text.startswith("index:"):
        return _by_index(text, catalogue, option)
    if text.startswith("file:"):
        return _by_file(text, catalogue, option)
    return _by_radec(text, catalogue, option, radec_tol)
