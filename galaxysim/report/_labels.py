"""Display names of labels."""

__all__ = ["label_name"]


def label_name(label, label_names=None):
    """The display name of a label: ``label_names[label]`` for an int in range, else text.

    Examples
    --------
    >>> label_name(1, ["elliptical", "spiral"]), label_name(7, ["elliptical"]), label_name("x")
    ('spiral', '7', 'x')
    """
    label = label.item() if hasattr(label, "item") else label
    if label_names and isinstance(label, int) and 0 <= label < len(label_names):
        return str(label_names[label])
    return str(label)
