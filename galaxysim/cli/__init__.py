"""The ``galaxysim`` command."""

from galaxysim.cli._main import main

__all__ = ["main"]
