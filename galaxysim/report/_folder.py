"""A report folder written whole: staged in a sibling folder, then swapped into place.

A reader of the report folder sees the previous complete report or the new complete
one, never a mix (:class:`galaxysim.utils._staging.StagedFolder` stages and swaps it).
A folder that is not a galaxysim report (no ``.galaxysim-report`` marker), or a report
holding files it did not write (a user's notes), is never replaced: that is an error,
not deleted data.
"""

from galaxysim.utils._staging import StagedFolder, check_staged_dir

__all__ = ["MARKER", "ReportFolder", "check_report_dir"]

MARKER = ".galaxysim-report"
"""JSON file naming the files of a report; a folder without it is not replaced."""


def check_report_dir(out_dir):
    """Check that a report can be written to ``out_dir`` and return its absolute path.

    A report folder can be new, an empty folder, or an earlier galaxysim report
    (recognised by its ``.galaxysim-report`` file) holding only the files that report
    wrote; it is then replaced whole. Anything else is refused rather than deleted.

    Parameters
    ----------
    out_dir : path-like
        The report folder.

    Returns
    -------
    path : pathlib.Path
        ``out_dir`` made absolute, with symbolic links resolved.

    Raises
    ------
    ValueError
        ``out_dir`` names a file, the current folder (or one above it), a folder that
        is not a galaxysim report, or a report holding other files.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> check_report_dir(os.path.join(d, "new")).name
    'new'
    >>> with open(os.path.join(d, "notes.txt"), "w") as f:
    ...     _ = f.write("mine")
    >>> check_report_dir(d)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: ... is not a galaxysim report (it has no .galaxysim-report file) ...
    """
    return check_staged_dir(out_dir, marker=MARKER, what="report")


class ReportFolder(StagedFolder):
    """A report's staging folder, swapped into place whole by :meth:`commit`.

    Parameters
    ----------
    out_dir : path-like
        Destination (checked by :func:`check_report_dir`; its parents are created).

    Attributes
    ----------
    dest : pathlib.Path
        The report folder, absolute.
    staging : pathlib.Path
        Where the report is written until :meth:`commit`.
    """

    def __init__(self, out_dir):
        super().__init__(out_dir, marker=MARKER, what="report")
