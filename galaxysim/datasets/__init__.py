"""Galaxy images: the built-in procedural catalogue, the Milky Way query, and loaders
for Galaxy10 HDF5 files and folders of cutouts. Nothing here trains anything."""

from galaxysim.datasets._folder import load_image_folder
from galaxysim.datasets._galaxy10 import load_galaxy10
from galaxysim.datasets._generate import PARAM_FIELDS, make_galaxies, render_galaxy
from galaxysim.datasets._lazy import open_catalogue
from galaxysim.datasets._milky_way import load_milky_way

__all__ = [
    "PARAM_FIELDS",
    "load_galaxy10",
    "load_image_folder",
    "load_milky_way",
    "make_galaxies",
    "open_catalogue",
    "render_galaxy",
]
