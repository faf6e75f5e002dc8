"""The queries of a command, matched to the catalogue's survey.

A query is the Milky Way (``milkyway``: the model, ``milkyway-illustration``: the
NASA/JPL-Caltech illustration), an image file (or, for ``search``, a folder of them), or
a catalogue member (``index:N``, ``file:NAME``, ``radec:RA,DEC``).

With ``--catalog``, the Milky Way and image files are imaged as that catalogue's survey
images its galaxies (:class:`~galaxysim.preprocessing.SurveyImager`, fitted once on the
catalogue as it is searched, after its crop and resize): centred, scaled to the typical
size of its galaxies (of the ``--match-classes`` labels, for example its disks), blurred
to its PSF, colour-matched, on its sky and noise. ``--no-match`` turns that off and
``--reframe`` keeps manual control; both search the plain query: the Milky Way framed
like the built-in catalogue, an image file read whole and resized to ``--image-size``.
The built-in catalogue needs no matching (its generator renders the Milky Way model
too), and a catalogue member is its catalogue image: neither is matched.

The query's framing never depends on the catalogue's ``--crop``: an image file is
always read whole.
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np

from galaxysim.cli._catalogue import find_member, resolve_label
from galaxysim.cli._checks import MEMBER_PREFIXES, UserError, check_query

__all__ = [
    "Query",
    "add_match_options",
    "check_match_options",
    "load_queries",
    "load_query",
    "query_imager",
]

_BUILTIN_NEEDS_NO_MATCH = (
    "the built-in catalogue needs no matching (its generator renders the Milky Way model too)"
)


def add_match_options(p):
    """``--no-match`` and ``--match-classes`` of a command that reads a query."""
    p.add_argument(
        "--no-match",
        action="store_true",
        help="search the query as given instead of matching it to --catalog's survey. By "
        "default, with --catalog, `milkyway`, `milkyway-illustration` and image files are "
        "imaged as the catalogue images its galaxies (centred, scaled to their typical "
        "size, blurred to their PSF, colour-matched, on their sky and noise; measured on "
        "the catalogue as searched) and the report shows the query before and after. "
        f"Catalogue galaxies (index:, file:, radec:) are never matched, and {_BUILTIN_NEEDS_NO_MATCH}",
    )
    p.add_argument(
        "--match-classes",
        metavar="LABELS",
        help="comma list of the catalogue labels (names or numbers) whose galaxies' size "
        "and colour a matched query takes, for example its disk galaxies (default: all "
        "galaxies; in a catalogue of mostly ellipticals a query then takes an "
        "elliptical's size and colour)",
    )


def _matching_off(args):
    """Why queries are not matched (``""`` when they are)."""
    if args.catalogue is None and getattr(args, "index", None) is None:
        return _BUILTIN_NEEDS_NO_MATCH
    if args.no_match:
        return "--no-match is given"
    if getattr(args, "reframe", None) is not None:
        return "--reframe frames the query by hand"
    return ""


def check_match_options(args):
    """``--match-classes`` only where queries are matched (before any data is read)."""
    if getattr(args, "match_classes", None) is None:
        return
    off = _matching_off(args)
    if off:
        raise UserError(f"--match-classes chooses how queries are matched, but {off}.")
    if not [c for c in args.match_classes.split(",") if c.strip()]:
        raise UserError("--match-classes is empty; give label names or numbers, e.g. 1,2.")


def _match_labels(args, catalogue):
    """The label values of ``--match-classes`` (None without it)."""
    if args.match_classes is None:
        return None
    if catalogue.target is None:
        raise UserError(f"--match-classes needs labels, and {catalogue.no_labels}.")
    values = []
    for text in (c.strip() for c in args.match_classes.split(",")):
        if not text:
            continue
        try:
            value = resolve_label(text, catalogue.label_names, catalogue.target)
        except UserError:
            present = np.unique(catalogue.target).tolist()
            known = ", ".join(f"{v} {catalogue.label(np.flatnonzero(catalogue.target == v)[0])}"
                              for v in present)  # fmt: skip
            raise UserError(
                f"--match-classes: unknown label {text!r}; the catalogue's labels are "
                f"{known} (give names or numbers)."
            ) from None
        if value not in values:
            values.append(value)
    return values


def query_imager(args, catalogue):
    """The :class:`~galaxysim.preprocessing.SurveyImager` of the command's queries,
    fitted on the catalogue's images as searched (once; cached on ``args``), or None
    when queries are not matched (see the module docstring)."""
    if _matching_off(args):
        return None
    if getattr(args, "imager", None) is None:
        from galaxysim.preprocessing import SurveyImager

        labels = _match_labels(args, catalogue)
        imager = SurveyImager(reference_classes=labels, random_state=args.seed)
        imager.fit(catalogue.images, catalogue.target if labels is not None else None)
        args.imager = imager
        args.match_note = _match_note(imager, catalogue, labels)
        if not args.quiet:
            print(f"query matched to the catalogue: {imager.describe()}", file=sys.stderr)
    return args.imager


def _match_note(imager, catalogue, labels):
    """One line for reports: what was estimated, and on which galaxies."""
    text = imager.describe()
    if labels is not None:
        names = ", ".join(catalogue.label(np.flatnonzero(catalogue.target == v)[0]) for v in labels)
        text += f"; reference galaxies: {names} (--match-classes)"
    return text


@dataclasses.dataclass
class Query:
    """One query of a command: its name as given, image, description, the catalogue row
    it is (``member``, None for an image from elsewhere), and, for a query matched to
    the catalogue, its image unmatched and what the matching estimated."""

    name: str
    image: np.ndarray
    description: str
    member: int | None = None
    unmatched: np.ndarray | None = None
    matching: str = ""

    def as_report(self):
        """The :class:`~galaxysim.report.SearchQuery` of the report."""
        from galaxysim.report import SearchQuery

        note = (
            ""
            if self.member is None
            else f"Galaxy {self.member} is the query itself: it is left out of its neighbours."
        )
        return SearchQuery(
            self.name,
            self.image,
            self.description,
            note=note,
            unmatched=self.unmatched,
            matching=self.matching,
        )


def _read_image(path, max_pixels=None):
    # the one reader, as for catalogue folders: same file, same pixels
    from galaxysim.utils._imread import ImageReadError, ImageTooLargeError, read_image

    try:
        return read_image(path, max_pixels=max_pixels)[np.newaxis]
    except ImageTooLargeError as exc:
        raise UserError(
            f"query image {path} is {exc.size[0]}x{exc.size[1]} pixels, more than the "
            f"{exc.limit:,} pixels galaxysim reads (a guard against decompression bombs); "
            "shrink it first, or if you trust it, pass a larger --max-pixels."
        ) from None
    except ImageReadError as exc:
        raise UserError(f"cannot read image {path}: {exc.reason}") from None


def _matched(imager, spec, pixels, option):
    from galaxysim.datasets import load_milky_way

    try:
        if spec == "milkyway":
            return load_milky_way(like=imager)
        if spec == "milkyway-illustration":
            return load_milky_way(kind="illustration", like=imager)
        return imager.transform(pixels)
    except ValueError as exc:
        if "No galaxy found" not in str(exc):
            raise
        raise UserError(
            f"{option} {spec}: no galaxy stands out of the sky near the image's centre, so "
            "it cannot be matched to the catalogue; pass an image with the galaxy near its "
            "centre, or --no-match."
        ) from None


def load_query(args, X, option="--query", spec=None, imager=None):
    """A query image of the catalogue ``X``'s shape, its description, and (matched by
    ``imager``, a fitted SurveyImager) the query unmatched.

    ``spec``: ``milkyway``, ``milkyway-illustration`` or an image file (default:
    ``args.query``). Unmatched, the Milky Way is framed like the built-in catalogue and
    a file is read whole and resized to ``--image-size`` (never cropped: the query's
    framing does not depend on the catalogue's ``--crop``); ``--reframe`` then shrinks
    it onto dark sky.

    Returns
    -------
    query : ndarray of shape (1, size, size, n_channels)
    description : str
    unmatched : ndarray of shape (1, size, size, n_channels) or None
        The query as ``--no-match`` would search it; None when not matched.
    """
    from galaxysim.datasets import load_milky_way
    from galaxysim.utils._image import frame_images, reframe_images

    spec = args.query if spec is None else spec
    pixels = None
    if spec == "milkyway":
        q, desc = load_milky_way(kind="model", image_size=args.image_size), "Milky Way model"
    elif spec == "milkyway-illustration":
        q = load_milky_way(kind="illustration", image_size=args.image_size)
        desc = "Milky Way illustration (NASA/JPL-Caltech)"
        if imager is None:
            desc += ", reframed"
    else:
        check_query(spec, option)
        pixels = _read_image(Path(spec), getattr(args, "max_pixels", None))  # (1, H, W, C)
        q, desc = frame_images(pixels, image_size=args.image_size), str(spec)
    unmatched = None
    if imager is not None:
        unmatched, q = q, _matched(imager, spec, pixels, option)
        desc += ", matched to the catalogue"
    elif getattr(args, "reframe", None) is not None:
        q = reframe_images(
            q,
            image_size=args.image_size,
            fill_fraction=args.reframe,
            noise_sigma=0.01,
            random_state=args.seed,
        )
        desc += f", reframed to {args.reframe:g} of the frame"
    if q.shape[1:] != X.shape[1:]:
        raise UserError(
            f"query is {q.shape[1]}x{q.shape[2]}x{q.shape[3]} but the catalogue "
            f"is {X.shape[1]}x{X.shape[2]}x{X.shape[3]}; use the same --image-size."
        )
    return q, desc, unmatched


def load_queries(args, catalogue, specs, option="--query", *, folders=False):
    """The :class:`Query` objects of ``specs``: catalogue members as their framed
    catalogue images (not read again, never matched), images (and, with ``folders``,
    every image of a folder) as :func:`load_query` frames them, matched to the
    catalogue where :func:`query_imager` says so."""
    from galaxysim.datasets._folder import find_images

    queries = []

    def add(name, spec):
        imager = query_imager(args, catalogue)
        q, desc, unmatched = load_query(args, catalogue.images, option, spec, imager)
        note = args.match_note if imager is not None else ""
        queries.append(Query(name, q, desc, unmatched=unmatched, matching=note))

    for spec in specs:
        if spec.startswith(MEMBER_PREFIXES):
            i = find_member(spec, catalogue, option=option, radec_tol=args.radec_tol)
            image = catalogue.images[i : i + 1]
            queries.append(Query(spec, image, f"catalogue {catalogue.describe(i)}", member=i))
        elif folders and Path(spec).is_dir():
            files = find_images(spec)
            if not files:
                raise UserError(f"{option} {spec}: the folder holds no images.")
            for path in files:
                add(str(path), str(path))
        else:
            add(spec, spec)
    names = [q.name for q in queries]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{option} {repeated[0]} is given more than once.")
    return queries
