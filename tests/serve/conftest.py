"""Small catalogues and explorers of them for the serve tests (module-scoped: each
explorer is built once)."""

import csv
import warnings

import h5py
import numpy as np
import pytest
from PIL import Image

from galaxysim.cli._main import build_parser, check_args
from galaxysim.cli._process import Stdout
from galaxysim.datasets import make_galaxies

N, SIZE = 40, 32
SCRIPT_LABEL = "<script>alert('label')</script>"
FORMULA_LABEL = "=1+2"
LABELS = ("Spiral", SCRIPT_LABEL, FORMULA_LABEL)


def file_name(i):
    """Folder files, some with HTML in their names."""
    return f"<i>g{i}.png" if i % 5 == 0 else f"g{i}.png"


@pytest.fixture(scope="session")
def images():
    return make_galaxies(N, image_size=SIZE, random_state=5)


@pytest.fixture(scope="session")
def folder(tmp_path_factory, images):
    """An image folder with a labels CSV whose labels and file names hold HTML and a
    spreadsheet formula."""
    X, _ = images
    path = tmp_path_factory.mktemp("serve-folder")
    with open(path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "kind"])
        for i, image in enumerate(X):
            Image.fromarray(image).save(path / file_name(i))
            w.writerow([file_name(i), LABELS[i % 3]])
    return path


@pytest.fixture(scope="session")
def decals(tmp_path_factory, images):
    """A Galaxy10 DECaLS-layout file: positions for radec: queries."""
    X, y = images
    path = tmp_path_factory.mktemp("serve-decals") / "g10.h5"
    with h5py.File(path, "w") as f:
        f["images"], f["ans"] = X, y
        f["ra"], f["dec"] = np.linspace(150, 151, N), np.linspace(2, 3, N)
    return path


def explorer_app(*argv):
    """The app and catalogue ``galaxysim serve ARGV`` would serve."""
    from galaxysim.cli._serve import build_explorer

    args = build_parser().parse_args(["serve", "-q", *argv])
    args.stdout = Stdout()
    check_args(args)
    return build_explorer(args)


@pytest.fixture(scope="session")
def folder_app(folder):
    return explorer_app("--catalog", str(folder), "--image-size", str(SIZE))


def test_client(app):
    """FastAPI's TestClient of ``app`` (its import's notice about httpx silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    return TestClient(app)


test_client.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def client(folder_app):
    with test_client(folder_app[0]) as c:
        yield c
