"""Display names of labels."""

__all__ = ["label_name"]


def label_name(label, label_names=None):
    """Display name of a label: its entry in ``label_names`` if an int in range, else its text.

    Examples
    --------
    >>> label_name(1, ["elliptical", "spiral"]), label_name(7, ["elliptical"]), label_name("x")
    ('spiral', '7', 'x')
    """
    label = label.item() if hasattr(label, "item") else label
    if label_names and isinstance(label, int) and 0 <= label < len(label_names):
        return str(label_names[label])
    return str(label)
