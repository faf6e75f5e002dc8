"""Docstrings and messages name only public things: no private module, no path of the
project's own workspace, no design notes."""

import ast
import re
from pathlib import Path

import pytest

import galaxysim

PACKAGE = Path(galaxysim.__file__).parent
MODULES = sorted(
    [*PACKAGE.glob("datasets/*.py"), *PACKAGE.glob("plotting/*.py"), *PACKAGE.glob("utils/*.py")]
)
# the compatibility and thread modules are private helpers of every subpackage
MODULES = [p for p in MODULES if p.name not in ("_sklearn_compat.py", "_threads.py")]
# A dotted path through a private module (galaxysim.utils._image.frame_images), the
# project's data folder, or its design notes.
FORBIDDEN = re.compile(r"galaxysim(\.\w+)*\._\w+|shared/data|\.\./shared|DESIGN\.md")


def _texts(tree):
    """Every string literal of a module (docstrings, messages, f-string parts)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_private_module_or_workspace_in_texts(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad = [(line, m.group()) for line, text in _texts(tree) if (m := FORBIDDEN.search(text))]
    assert not bad, f"{path.name} names private or workspace things at lines {bad}"


def test_forbidden_pattern_catches_what_it_should():
    for text in (
        "see galaxysim.utils._image.frame_images",
        "galaxysim.datasets._generate.PARAM_FIELDS",
        "../shared/data/milky-way/x.png",
        "the structure in DESIGN.md",
    ):
        assert FORBIDDEN.search(text), text
    assert not FORBIDDEN.search("see galaxysim.datasets.PARAM_FIELDS and galaxysim.utils")
