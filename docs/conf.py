"""Sphinx configuration of the galaxysim documentation.

Build with ``make docs`` (warnings are errors). The example gallery is executed in
full by default; ``GALAXYSIM_DOCS_FAST=1`` runs only the quick examples (pixel search,
grid search, data loading) and shows the others without their output, which is what
CI does to stay inside its time budget.
"""

import os
import sys
from pathlib import Path

import galaxysim

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "sphinxext"))

project = "galaxysim"
author = "the galaxysim developers"
copyright = "galaxysim developers"  # noqa: A001
version = release = galaxysim.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]
# No intersphinx: the build must work without a network.

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "auto_examples/*.ipynb", "**/*.ipynb", "**.md5", "**.zip"]
templates_path = []

html_theme = "alabaster"
html_theme_options = {
    "description": "Which galaxies look most like the Milky Way?",
    "fixed_sidebar": True,
    "page_width": "1100px",
}
html_static_path = ["_static"] if (HERE / "_static").is_dir() else []
html_title = f"galaxysim {release}"

# autodoc / autosummary / numpydoc
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

myst_heading_anchors = 3

# sphinx-gallery
# Examples on real cutouts read them from the folder named by GALAXYSIM_EXAMPLE_DATA.
# sphinx-gallery runs each example from its own folder and defines no ``__file__``, so
# the relative path an example uses from the repository root does not resolve there:
# point it at the data beside the repository when they are present. An example then
# fails (the build fails) when it cannot find a file it needs, instead of skipping.
_EXAMPLE_DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
if _EXAMPLE_DATA.is_dir():
    os.environ.setdefault("GALAXYSIM_EXAMPLE_DATA", str(_EXAMPLE_DATA))

FAST = os.environ.get("GALAXYSIM_DOCS_FAST", "") not in ("", "0")
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Full: every plot_*.py runs. Fast (CI): only the quick, network-free examples run;
    # the others are shown with their code but without output.
    "filename_pattern": (
        r"/(plot_pixel_search|plot_grid_search|plot_loading)\.py" if FAST else r"/plot_"
    ),
    "image_scrapers": ("matplotlib", "galaxysim_scraper.figure_scraper"),
    "within_subsection_order": "FileNameSortKey",
    "subsection_order": [
        f"../examples/{name}"
        for name in ("pixel_search", "deep", "model_selection", "real_data", "data")
    ],
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "min_reported_time": 1,
    "reset_modules": ("matplotlib",),
    "capture_repr": (),
}


def _skip_metadata_requests(app, what, name, obj, skip, options):
    # scikit-learn generates set_*_request methods on every estimator; their
    # docstrings point into scikit-learn's own documentation.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_requests)
