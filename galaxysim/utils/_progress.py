"""The one progress helper: tqdm bars on stderr, silenced by ``verbose=0``."""

from tqdm.auto import tqdm


def progress(iterable=None, *, total=None, desc=None, verbose=1, unit="it"):
    """Wrap ``iterable`` in a progress bar shown when ``verbose`` is truthy.

    Parameters
    ----------
    iterable : iterable, default=None
        What to iterate over; ``None`` gives a manual bar (call ``update``).
    total : int, default=None
        Number of steps, when ``iterable`` has no ``len``.
    desc : str, default=None
        Label shown before the bar.
    verbose : int or bool, default=1
        Show the bar when truthy.
    unit : str, default="it"
        Unit name shown in the rate.

    Returns
    -------
    bar : tqdm
        Iterable (and context manager) with ``update`` and ``close``.
    """
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        disable=not verbose,
        unit=unit,
        leave=False,
        dynamic_ncols=True,
    )
