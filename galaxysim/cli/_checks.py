"""Checks of the command line, made right after parsing, before any long work.

Every number is checked here under its option's name, and every path the command will
read or write: a search that would fail to write its report fails before it starts.
"""

import math
import os
import re
import stat
from pathlib import Path

WHOLE_FRAME = "none"
"""``--crop none``: keep the whole frame (the default of image folders)."""

NO_LABELS = "none"
"""``--labels-csv none``: load an image folder without labels."""

QUERY_KEYWORDS = ("milkyway", "milkyway-illustration")

MEMBER_PREFIXES = ("index:", "file:", "radec:")
"""Queries that name a catalogue member (``index:N``, ``file:NAME``, ``radec:RA,DEC``)."""

MAX_GENERATED = 1024
"""Most images ``generate`` draws into one PNG grid."""

SEED_MAX = 2**32 - 1

DEEP_IMAGE_MULTIPLE = 16
"""The networks' images are multiples of this (four 2x poolings)."""


class UserError(Exception):
    """A mistake in the command line or its inputs: one line, exit status 2."""


# (attribute, option, test, requirement); a None value is an option left out
_NUMBER_RULES = (
    ("n_catalogue", "--n-catalog", lambda v: v >= 1, "at least 1"),
    ("image_size", "--image-size", lambda v: v >= 8, "at least 8 (pixels)"),
    ("crop", "--crop", lambda v: v == WHOLE_FRAME or v >= 1, "at least 1 (or `none`)"),
    ("seed", "--seed", lambda v: 0 <= v <= SEED_MAX, f"between 0 and {SEED_MAX}"),
    ("k", "-k", lambda v: v >= 1, "at least 1"),
    ("reframe", "--reframe", lambda v: 0 < v <= 1, "in (0, 1]"),  # NaN fails both
    ("n", "--n", lambda v: 1 <= v <= MAX_GENERATED, f"between 1 and {MAX_GENERATED}"),
    ("scale", "--scale", lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0"),
    ("epochs", "--epochs", lambda v: v >= 1, "at least 1"),
    ("folds", "--folds", lambda v: v >= 2, "at least 2"),
    (
        "radec_tol",
        "--radec-tol",
        lambda v: math.isfinite(v) and v > 0,
        "a positive number (arcsec)",
    ),
    ("max_pixels", "--max-pixels", lambda v: v >= 1, "at least 1"),
)


def crop_option(text):
    """argparse type of ``--crop``: a number of pixels, or ``none`` (the whole frame)."""
    if text.strip().lower() == WHOLE_FRAME:
        return WHOLE_FRAME
    return int(text)


crop_option.__name__ = "pixel count or 'none'"  # what argparse's message calls it


def check_numbers(args):
    """Refuse a numeric option out of its range, naming the option."""
    for attr, option, test, requirement in _NUMBER_RULES:
        value = getattr(args, attr, None)
        if value is None:
            continue
        if not test(value):
            shown = f"{value:g}" if isinstance(value, float) else value
            raise UserError(f"{option} must be {requirement}; got {shown}.")


def check_deep_image_size(args, methods):
    """The deep methods need ``--image-size`` a multiple of 16."""
    size = args.image_size
    if methods and size % DEEP_IMAGE_MULTIPLE:
        low = max(DEEP_IMAGE_MULTIPLE, size - size % DEEP_IMAGE_MULTIPLE)
        high = size - size % DEEP_IMAGE_MULTIPLE + DEEP_IMAGE_MULTIPLE
        raise UserError(
            f"--image-size {size} does not suit the {', '.join(methods)} method(s): their "
            f"networks need a multiple of {DEEP_IMAGE_MULTIPLE}; use --image-size {low} or {high}."
        )


def check_builtin_catalogue_size(args):
    """Refuse a built-in catalogue that would not fit in memory, before making it."""
    from galaxysim.utils._memory import InsufficientMemoryError, check_memory

    per_image = args.image_size**2 * 3 + 256  # pixels, and (more than) their parameters
    try:
        check_memory(
            args.n_catalogue * per_image,
            f"--n-catalog {args.n_catalogue} at --image-size {args.image_size}",
            per_item=(per_image, "images"),
            hint="Use a smaller --n-catalog or --image-size.",
        )
    except InsufficientMemoryError as exc:
        raise UserError(str(exc)) from None


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "a FIFO, socket or device"


def check_input(path, option, *, folder_ok=False):
    """``path`` is a regular file (or, with ``folder_ok``, a folder).

    Anything else is refused before it is opened (a FIFO would block the read forever).
    """
    from galaxysim.utils._io import check_regular_file

    if folder_ok and os.path.isdir(path):
        return
    try:
        check_regular_file(path, option)
    except (OSError, ValueError) as exc:
        raise UserError(str(exc)) from None


def parse_index(text, option="--query"):
    """The row of ``index:N``."""
    body = text[len("index:") :].strip()
    if not body.isdigit():
        raise UserError(f"{option} {text!r}: expected index:N, a catalogue row from 0.")
    return int(body)


def parse_radec(text, option="--query"):
    """``(ra, dec)`` in degrees of ``radec:RA,DEC``, checked (RA 0-360, DEC -90-90)."""
    parts = text[len("radec:") :].replace(" ", "").split(",")
    try:
        ra, dec = (float(p) for p in parts)
    except ValueError:
        raise UserError(
            f"{option} {text!r}: expected radec:RA,DEC in degrees, e.g. radec:150.1,2.2."
        ) from None
    if not (math.isfinite(ra) and 0 <= ra <= 360 and math.isfinite(dec) and -90 <= dec <= 90):
        raise UserError(
            f"{option} {text!r}: RA must be in 0-360 and DEC in -90-90 degrees; got "
            f"RA {ra:g}, DEC {dec:g}."
        )
    return ra, dec


def check_query(text, option, *, folder_ok=False):
    """``--query``/``--like``: a keyword, a catalogue member (``index:N``, ``file:NAME``,
    ``radec:RA,DEC``, checked for form only: the catalogue is not read yet), a regular
    image file, or with ``folder_ok`` a folder of images."""
    if text in QUERY_KEYWORDS:
        return
    if text.startswith("index:"):
        parse_index(text, option)
        return
    if text.startswith("radec:"):
        parse_radec(text, option)
        return
    if text.startswith("file:"):
        if not text[len("file:") :].strip():
            raise UserError(f"{option} {text!r}: expected file:NAME, an image of the catalogue.")
        return
    path = Path(text)
    if folder_ok and path.is_dir():
        return
    if not path.is_file():  # False for folders, FIFOs and missing paths
        raise UserError(
            f"{option} {text!r} is neither `milkyway`, `milkyway-illustration`, a catalogue "
            f"member (index:N, file:NAME, radec:RA,DEC) nor an existing image file"
            f"{' or folder of images' if folder_ok else ''}."
        )


def _existing_ancestor(path):
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path):
        path = path.parent
    return path


def check_output_folder(path, option):
    """``path`` is a folder, or a folder can be created there, that this user may write."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        what = "a broken link" if not path.exists() else _kind(os.stat(path).st_mode)
        raise UserError(
            f"{option} {path} is {what}, not a folder; name a folder (it is created if needed)."
        )
    _check_creatable(path, path, option)


def _check_creatable(path, folder, option):
    """``folder`` (where ``path`` goes) exists or can be created, and this user may write
    there: the nearest existing path at or above it is a writable folder."""
    base = _existing_ancestor(folder)
    if not base.is_dir():
        raise UserError(f"{option} {path} cannot be created: {base} is not a folder.")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path} cannot be written: no permission to write in {base}.")


def check_report_folder(path, option):
    """``path`` can take a report: a new or empty folder, or an earlier report (which
    the report replaces whole; see :func:`galaxysim.report.check_report_dir`)."""
    from galaxysim.report import check_report_dir

    check_output_folder(path, option)
    try:
        check_report_dir(path)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def check_output_png(path, option):
    """``path`` names a .png file that can be written (its folder is created if needed)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(
            f"{option} {path} is a folder; name the PNG file, e.g. {path / 'grid.png'}."
        )
    if path.suffix.lower() != ".png":
        raise UserError(f"{option} {path} must name a .png file (the grid is written as PNG).")
    if os.path.lexists(path) and not path.is_file():
        raise UserError(f"{option} {path} is {_kind(os.stat(path).st_mode)}, not a file.")
    _check_creatable(path, path.parent, option)


# ------------------------------------------------------------------ library messages
# Library errors name Python parameters; the command's user typed options. The few
# parameters the command sets from its options, and how their values are spelled:
_OPTION_OF = {
    "crop": "--crop",
    "image_size": "--image-size",
    "label_column": "--label-column",
    "labels_csv": "--labels-csv",
    "on_error": "--on-error",
    "fill_fraction": "--reframe",
    "max_pixels": "--max-pixels",
    "allow_outside": "--allow-outside",
    "encoding": "--encoding",
}
_FLAGS = {"--allow-outside"}  # options without a value
_PARAMETER = re.compile(
    r"\b(" + "|".join(_OPTION_OF) + r")"
    r"(?:=(None|False|True|'[^']*'|\"[^\"]*\"|<[^>]*>|[\w.]+)?(?=[\s,.;:)]|$)|(?= (?:<=|>=|<|>|must\b)))"
)


def _option_text(match):
    option, value = _OPTION_OF[match[1]], match[2]
    if match[0] == match[1] or value is None or option in _FLAGS:  # "crop <= 40", "crop= and"
        return option
    if value in ("None", "False"):
        value = "none"
    elif value.startswith("<"):
        value = value.strip("<>").upper()
    return f"{option} {value.strip(chr(39) + chr(34))}"


# advice in words the translation below does not catch, or that only a Python caller
# can follow (the command has no such option value): its text for the command
_REPHRASED = ((re.compile(r"a smaller image_size \(or a smaller crop with image_size=None\)"),
               "a smaller --image-size"),)  # fmt: skip


def cli_message(text):
    """``text`` with the parameters the command sets spelled as its options (and
    advice that only a Python caller could follow left out).

    Examples
    --------
    >>> cli_message("crop=64 is larger than the 40x40 images. Choose crop <= 40, or crop=None.")
    '--crop 64 is larger than the 40x40 images. Choose --crop <= 40, or --crop none.'
    >>> cli_message("Pass label_column=<name>, or on_error='skip'.")
    'Pass --label-column NAME, or --on-error skip.'
    >>> cli_message("pass allow_outside=True; encoding='latin-1'; a larger max_pixels=, or")
    'pass --allow-outside; --encoding latin-1; a larger --max-pixels, or'
    >>> cli_message("Choose a smaller image_size (or a smaller crop with image_size=None).")
    'Choose a smaller --image-size.'
    """
    text = str(text)
    for pattern, replacement in _REPHRASED:
        text = pattern.sub(replacement, text)
    return _PARAMETER.sub(_option_text, text)
