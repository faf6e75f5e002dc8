import contextlib
import csv
import sys
import types
from pathlib import Path

import joblib
import numpy as np
import pytest
from PIL import Image

from galaxysim.datasets import load_image_folder
from galaxysim.utils._image import frame_images

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
GZ1 = SHARED_DATA / "gz1-dev"


def _image(seed, size=80, channels=3):
    rng = np.random.default_rng(seed)
    shape = (size, size, channels) if channels > 1 else (size, size)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _huge_png(path, width, height):
    """A PNG header declaring width x height, a few bytes on disk (no pixel data)."""
    import struct
    import zlib

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


@pytest.fixture
def folder(tmp_path):
    """Six PNGs in images/, with a labels.csv like the shared data folders."""
    (tmp_path / "images").mkdir()
    arrays = {}
    rows = []
    names = ["Elliptical", "Spiral", "Edge-on"]
    for i in range(6):
        name = f"images/g{i}.png"
        arrays[name] = _image(i)
        Image.fromarray(arrays[name]).save(tmp_path / name)
        rows.append([name, 1000 + i, i % 3, names[i % 3]])
    _write_csv(tmp_path / "labels.csv", ["file", "objid", "gz_class", "gz_name"], rows)
    return tmp_path, arrays, rows


def test_csv_labels_and_companion_names(folder):
    path, arrays, rows = folder
    data = load_image_folder(path, verbose=0)
    assert data.images.shape == (6, 64, 64, 3)
    assert data.images.dtype == np.uint8
    assert data.target.tolist() == [0, 1, 2, 0, 1, 2]
    assert data.target_names.tolist() == ["Elliptical", "Spiral", "Edge-on"]
    assert data.label_column == "gz_class"
    assert [Path(f).name for f in data.filenames] == [f"g{i}.png" for i in range(6)]
    expected = frame_images(np.stack([arrays[r[0]] for r in rows]), crop=None, image_size=64)
    np.testing.assert_array_equal(data.images, expected)


@pytest.mark.parametrize("crop, image_size", [(64, 64), (40, 20), (None, None), (50, None)])
def test_framing_matches_frame_images(folder, crop, image_size):
    path, arrays, rows = folder
    X, y = load_image_folder(
        path, crop=crop, image_size=image_size, return_X_y=True, verbose=0, n_jobs=2
    )
    expected = frame_images(
        np.stack([arrays[r[0]] for r in rows]), crop=crop, image_size=image_size
    )
    np.testing.assert_array_equal(X, expected)
    assert y.tolist() == [0, 1, 2, 0, 1, 2]


def test_parallel_same_as_serial(folder):
    path, _, _ = folder
    X1, y1 = load_image_folder(path, n_jobs=1, return_X_y=True, verbose=0)
    X2, y2 = load_image_folder(path, n_jobs=2, return_X_y=True, verbose=0)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize(
    "n_jobs, config, expected",
    [(None, None, 1), (None, 3, 3), (2, None, 2), (2, 3, 2), (-1, None, joblib.cpu_count())],
)
def test_n_jobs_has_joblibs_meaning(folder, monkeypatch, n_jobs, config, expected):
    # None: joblib's default (1, or what a joblib.parallel_config context says)
    import galaxysim.datasets._folder as module

    seen = []
    real = module.Parallel

    def spy(*args, **kwargs):
        seen.append(kwargs["n_jobs"])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "Parallel", spy)
    path, _, _ = folder
    with joblib.parallel_config(n_jobs=config) if config else contextlib.nullcontext():
        X, _ = load_image_folder(path, n_jobs=n_jobs, return_X_y=True, verbose=0)
    assert seen == [expected] and len(X) == 6
    with pytest.raises(ValueError, match="n_jobs == 0"):
        load_image_folder(path, n_jobs=0, verbose=0)


def test_explicit_label_column_without_names(folder):
    path, _, _ = folder
    data = load_image_folder(path, label_column="objid", verbose=0)
    # integer labels are kept; target_names[k] names label k
    assert data.target.tolist() == list(range(1000, 1006))
    assert data.target_names[data.target[0]] == "1000"


def test_string_labels_are_encoded(tmp_path):
    for i in range(4):
        Image.fromarray(_image(i)).save(tmp_path / f"{i}.jpg")
    _write_csv(
        tmp_path / "labels.csv", ["file", "label"], [[f"{i}.jpg", "ab"[i % 2]] for i in range(4)]
    )
    data = load_image_folder(tmp_path, verbose=0)
    assert data.target_names.tolist() == ["a", "b"]
    assert data.target.tolist() == [0, 1, 0, 1]
    assert data.target.dtype == np.int64


def test_negative_integer_labels_are_encoded(tmp_path):
    for i in range(3):
        Image.fromarray(_image(i)).save(tmp_path / f"{i}.png")
    _write_csv(tmp_path / "labels.csv", ["file", "y"], [["0.png", -1], ["1.png", 5], ["2.png", -1]])
    data = load_image_folder(tmp_path, verbose=0)
    assert data.target.tolist() == [0, 1, 0]
    assert data.target_names.tolist() == ["-1", "5"]


def test_csv_elsewhere_relative_to_its_folder(folder, tmp_path):
    path, _, rows = folder
    other = tmp_path / "elsewhere"
    other.mkdir()
    _write_csv(other / "mine.csv", ["file", "kind"], [[f"../{r[0]}", r[2]] for r in rows[:3]])
    data = load_image_folder(path, labels_csv=other / "mine.csv", verbose=0)
    assert len(data.images) == 3
    assert data.target.tolist() == [0, 1, 2]


def test_no_csv_loads_every_image_sorted_recursively(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(_image(0)).save(tmp_path / "b.png")
    Image.fromarray(_image(1)).save(tmp_path / "a.jpeg")
    Image.fromarray(_image(2, channels=1)).save(tmp_path / "sub" / "c.png")  # grey -> RGB
    Image.fromarray(np.dstack([_image(3), np.full((80, 80), 255, np.uint8)])).save(
        tmp_path / "sub" / "d.png"
    )  # RGBA -> RGB
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "._a.jpeg").write_bytes(b"\x00\x05\x16\x07")  # macOS fork, not an image
    data = load_image_folder(tmp_path, verbose=0)
    assert [Path(f).relative_to(tmp_path).as_posix() for f in data.filenames] == [
        "a.jpeg",
        "b.png",
        "sub/c.png",
        "sub/d.png",
    ]
    assert data.target is None and data.target_names is None
    assert data.images.shape == (4, 64, 64, 3)
    grey = data.images[2]
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    X, y = load_image_folder(tmp_path, return_X_y=True, verbose=0)
    assert y is None and X.shape == (4, 64, 64, 3)


def test_labels_csv_false_ignores_csv(folder):
    path, _, _ = folder
    data = load_image_folder(path, labels_csv=False, verbose=0)
    assert data.target is None
    assert len(data.images) == 6


def test_broken_cutout_still_loads(tmp_path):
    # a survey "error" cutout: black frame with white text is a valid image
    img = np.zeros((80, 80, 3), np.uint8)
    img[30:40, 10:70] = 255
    Image.fromarray(img).save(tmp_path / "broken.jpg")
    data = load_image_folder(tmp_path, image_size=None, verbose=0)
    assert data.images.shape == (1, 80, 80, 3)


@pytest.fixture
def with_corrupt(folder):
    path, _, rows = folder
    good = (path / rows[1][0]).read_bytes()
    (path / rows[1][0]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    jpg = path / "images" / "g9.jpg"
    Image.fromarray(_image(9)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:200])  # truncated JPEG
    rows = rows + [["images/g9.jpg", 1, 0, "Elliptical"]]
    _write_csv(path / "labels.csv", ["file", "objid", "gz_class", "gz_name"], rows)
    return path, good


def test_corrupt_image_raises_naming_file(with_corrupt):
    path, _ = with_corrupt
    with pytest.raises(ValueError, match=r"Cannot read image .*g1\.png.*on_error='skip'"):
        load_image_folder(path, verbose=0)


def test_truncated_jpeg_raises_naming_file(tmp_path):
    jpg = tmp_path / "cut.jpg"
    Image.fromarray(_image(0)).save(jpg)
    jpg.write_bytes(jpg.read_bytes()[:300])
    with pytest.raises(ValueError, match=r"Cannot read image .*cut\.jpg"):
        load_image_folder(tmp_path, verbose=0)


def test_corrupt_images_skipped_with_one_warning(with_corrupt):
    path, _ = with_corrupt
    with pytest.warns(UserWarning, match=r"Skipped 2 of 7 files") as record:
        data = load_image_folder(path, on_error="skip", verbose=0, n_jobs=2)
    assert len([w for w in record if "Skipped" in str(w.message)]) == 1
    assert len(data.images) == len(data.target) == len(data.filenames) == 5
    assert [Path(f).name for f in data.filenames] == [
        "g0.png",
        "g2.png",
        "g3.png",
        "g4.png",
        "g5.png",
    ]
    assert data.target.tolist() == [0, 2, 0, 1, 2]


def test_missing_files_in_csv(folder):
    path, _, rows = folder
    rows = rows + [[f"images/missing{i}.png", 0, 0, "Elliptical"] for i in range(5)]
    _write_csv(path / "labels.csv", ["file", "objid", "gz_class", "gz_name"], rows)
    with pytest.raises(
        FileNotFoundError, match=r"5 of the 11 files .* do not exist.*missing0\.png"
    ):
        load_image_folder(path, verbose=0)
    with pytest.warns(UserWarning, match="Skipped 5 of 11 files"):
        data = load_image_folder(path, on_error="skip", verbose=0)
    assert len(data.images) == len(data.target) == 6


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="Image folder not found: .*nowhere"):
        load_image_folder(tmp_path / "nowhere", verbose=0)


def test_file_instead_of_folder(tmp_path):
    f = tmp_path / "x.h5"
    f.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="load_galaxy10"):
        load_image_folder(f, verbose=0)


def test_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="No images found in"):
        load_image_folder(tmp_path, verbose=0)


def test_missing_csv(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    with pytest.raises(FileNotFoundError, match="Labels CSV not found"):
        load_image_folder(tmp_path, labels_csv=tmp_path / "nope.csv", verbose=0)


def test_csv_without_named_column_lists_columns(folder):
    path, _, _ = folder
    with pytest.raises(
        ValueError, match=r"no column 'morph'.*\['file', 'objid', 'gz_class', 'gz_name'\]"
    ):
        load_image_folder(path, label_column="morph", verbose=0)


def test_csv_without_file_column(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    _write_csv(tmp_path / "labels.csv", ["path", "label"], [["a.png", 0]])
    with pytest.raises(ValueError, match=r"no 'file' column; columns found: \['path', 'label'\]"):
        load_image_folder(tmp_path, verbose=0)


def test_ambiguous_label_column(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    _write_csv(tmp_path / "labels.csv", ["file", "ring", "frac"], [["a.png", 1, 0.5]])
    with pytest.raises(
        ValueError, match=r"columns: \['file', 'ring', 'frac'\]\. Pass label_column="
    ):
        load_image_folder(tmp_path, verbose=0)
    assert load_image_folder(tmp_path, label_column="ring", verbose=0).target.tolist() == [1]


def test_empty_label_values(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [["a.png", ""]])
    with pytest.raises(ValueError, match="'label' .* is empty on 1 row"):
        load_image_folder(tmp_path, verbose=0)


def test_header_only_csv(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [])
    with pytest.raises(ValueError, match="lists no images"):
        load_image_folder(tmp_path, verbose=0)


def test_mixed_sizes_need_framing(tmp_path):
    Image.fromarray(_image(0, size=80)).save(tmp_path / "a.png")
    Image.fromarray(_image(1, size=100)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"different sizes after framing \(80x80: 1.*100x100: 1"):
        load_image_folder(tmp_path, crop=None, image_size=None, verbose=0)
    assert load_image_folder(tmp_path, crop=None, verbose=0).images.shape == (2, 64, 64, 3)
    assert load_image_folder(tmp_path, crop=70, image_size=None, verbose=0).images.shape == (
        2,
        70,
        70,
        3,
    )


def test_crop_larger_than_image(tmp_path):
    Image.fromarray(_image(0, size=80)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"crop=128 is larger than image .*small\.png \(80x80"):
        load_image_folder(tmp_path, crop=128, verbose=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"on_error": "ignore"}, "on_error must be 'raise' or 'skip'"),
        ({"crop": 0}, "crop must be a positive int"),
        ({"image_size": 12.5}, "image_size must be a positive int"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=match):
        load_image_folder(tmp_path, verbose=0, **kwargs)


def test_sixteen_bit_png_is_scaled(tmp_path):
    arr = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    X, _ = load_image_folder(tmp_path, return_X_y=True, verbose=0)
    assert X.shape == (1, 64, 64, 3)
    assert X.max() == 255 and X.min() == 0


def test_fits_skipped_without_astropy(tmp_path, monkeypatch):
    import galaxysim.utils._imread as imread_mod

    monkeypatch.setattr(imread_mod, "_has_astropy", lambda: False)
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    (tmp_path / "b.fits").write_bytes(b"SIMPLE  =                    T")
    with pytest.warns(UserWarning, match="Skipping 1 FITS file.*astropy"):
        data = load_image_folder(tmp_path, verbose=0)
    assert len(data.images) == 1


def test_fits_read_with_astropy(tmp_path, monkeypatch):
    # a stand-in for astropy.io.fits, so the FITS path is tested without astropy
    import galaxysim.utils._imread as imread_mod

    cube = np.random.default_rng(0).normal(100, 10, size=(3, 70, 70)).astype(np.float32)
    fits = types.SimpleNamespace(getdata=lambda p: cube)
    io = types.ModuleType("astropy.io")
    io.fits = fits
    astropy = types.ModuleType("astropy")
    astropy.io = io
    monkeypatch.setitem(sys.modules, "astropy", astropy)
    monkeypatch.setitem(sys.modules, "astropy.io", io)
    monkeypatch.setitem(sys.modules, "astropy.io.fits", fits)
    monkeypatch.setattr(imread_mod, "_has_astropy", lambda: True)
    (tmp_path / "g.fits").write_bytes(b"")
    X, _ = load_image_folder(tmp_path, image_size=None, return_X_y=True, verbose=0)
    assert X.shape == (1, 70, 70, 3) and X.dtype == np.uint8
    assert X.min() == 0 and X.max() == 255


@pytest.mark.skipif(not GZ1.is_dir(), reason="../shared/data/gz1-dev is not available")
def test_real_gz1_dev():
    with open(GZ1 / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = load_image_folder(GZ1, crop=128, image_size=64, n_jobs=2, verbose=0)
    assert data.images.shape == (len(rows), 64, 64, 3) == (3283, 64, 64, 3)
    assert data.images.dtype == np.uint8
    assert data.label_column == "gz1_class"
    assert data.target.tolist() == [int(r["gz1_class"]) for r in rows]
    assert data.target_names[0] == "Elliptical" and data.target_names[5] == "Merger"
    assert len(data.target_names) == 6
    assert Path(data.filenames[0]) == (GZ1 / rows[0]["file"]).absolute()
    # galaxies sit in the centre on dark sky: the centre is brighter than the corners
    centre = data.images[:, 24:40, 24:40].mean()
    corners = data.images[:, :8, :8].mean()
    assert centre > 2 * corners
    # the framing is the shared one
    with Image.open(GZ1 / rows[0]["file"]) as im:
        full = np.asarray(im.convert("RGB"))[np.newaxis]
    np.testing.assert_array_equal(data.images[0], frame_images(full, crop=128, image_size=64)[0])


# ------------------------------------------------------------------ one reader
def test_sixteen_bit_png_same_pixels_as_the_reader(tmp_path):
    from galaxysim.utils._imread import read_image

    rng = np.random.default_rng(0)
    arr = rng.gamma(2.0, 3000.0, size=(96, 96)).clip(0, 65535).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    X, _ = load_image_folder(tmp_path, crop=80, image_size=40, return_X_y=True, verbose=0)
    expected = frame_images(read_image(tmp_path / "deep.png")[None], crop=80, image_size=40)
    np.testing.assert_array_equal(X, expected)
    assert (X == 255).mean() < 0.05  # rescaled, not clipped


# ------------------------------------------------------------------ not regular files
def test_fifo_named_in_csv_is_refused_or_skipped(folder):
    import os

    path, _, rows = folder
    os.mkfifo(path / "images" / "pipe.png")
    rows = rows + [["images/pipe.png", 7, 0, "Elliptical"]]
    _write_csv(path / "labels.csv", ["file", "objid", "gz_class", "gz_name"], rows)
    with pytest.raises(ValueError, match=r"1 of the 7 files .* are not regular files.*named pipe"):
        load_image_folder(path, verbose=0)
    with pytest.warns(UserWarning, match=r"Skipped 1 of 7 .*pipe\.png \(not a regular file\)"):
        data = load_image_folder(path, on_error="skip", verbose=0)
    assert len(data.images) == len(data.target) == 6


def test_fifo_in_folder_listing_is_refused_or_skipped(tmp_path):
    import os

    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")
    with pytest.raises(ValueError, match=r"1 of the 2 files in .* are not regular files"):
        load_image_folder(tmp_path, verbose=0)
    with pytest.warns(UserWarning, match=r"b\.png \(not a regular file\)"):
        assert len(load_image_folder(tmp_path, on_error="skip", verbose=0).images) == 1


def test_fifo_as_labels_csv(tmp_path):
    import os

    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "labels.csv")
    with pytest.raises(ValueError, match=r"Labels CSV .*labels\.csv is a named pipe"):
        load_image_folder(tmp_path, verbose=0)


# ------------------------------------------------------------------ decompression bombs
def test_image_above_max_pixels_is_a_clear_error_or_skipped(folder):
    path, _, rows = folder
    Image.fromarray(np.zeros((120, 100, 3), np.uint8)).save(path / rows[2][0])
    with pytest.raises(
        ValueError, match=r"g2\.png is 100x120 pixels .*max_pixels=.*on_error='skip'"
    ):
        load_image_folder(path, max_pixels=10000, verbose=0)
    with pytest.warns(UserWarning, match=r"g2\.png \(100x120 pixels, more than the 10,000"):
        data = load_image_folder(path, max_pixels=10000, on_error="skip", verbose=0)
    assert data.target.tolist() == [0, 1, 0, 1, 2]
    assert len(load_image_folder(path, max_pixels=12000, verbose=0).images) == 6


def test_decompression_bomb_png_skipped_by_default_limit(tmp_path):
    import warnings

    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    _huge_png(tmp_path / "bomb.png", 14000, 14000)  # a few bytes, 196 million pixels declared
    with pytest.raises(ValueError, match=r"bomb\.png is 14000x14000 pixels"):
        load_image_folder(tmp_path, verbose=0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        data = load_image_folder(tmp_path, on_error="skip", verbose=0)
    assert len(data.images) == 1
    assert [str(w.message)[:13] for w in seen] == ["Skipped 1 of "]  # no Pillow warning


# ------------------------------------------------------------------ CSV problems
def test_csv_naming_a_file_twice(folder):
    path, _, rows = folder
    rows = rows + [rows[0], ["./images/g3.png", 9, 0, "Elliptical"]]
    _write_csv(path / "labels.csv", ["file", "objid", "gz_class", "gz_name"], rows)
    with pytest.raises(ValueError) as err:
        load_image_folder(path, verbose=0)
    msg = str(err.value)
    assert "names 2 image file(s) more than once" in msg
    assert "'images/g0.png' (rows 2, 8)" in msg
    assert "'images/g3.png' = './images/g3.png' (rows 5, 9)" in msg


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_csv_paths_outside_the_folder_are_refused(tmp_path, kind):
    secret = tmp_path / "secret"
    secret.mkdir()
    Image.fromarray(_image(0)).save(secret / "x.png")
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(_image(1)).save(data / "a.png")
    name = {"dotdot": "../secret/x.png", "absolute": str(secret / "x.png"), "symlink": "x.png"}
    if kind == "symlink":
        (data / "x.png").symlink_to(secret / "x.png")
    _write_csv(data / "labels.csv", ["file", "label"], [["a.png", 0], [name[kind], 1]])
    with pytest.raises(ValueError, match=r"1 of the 2 image files .* lie outside") as err:
        load_image_folder(data, verbose=0)
    assert f"{name[kind]!r} -> {secret / 'x.png'}" in str(err.value)
    assert "allow_outside=True" in str(err.value)
    loaded = load_image_folder(data, allow_outside=True, verbose=0)
    assert loaded.target.tolist() == [0, 1]


def test_symlinks_inside_the_folder_are_fine(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    (tmp_path / "store").mkdir()
    Image.fromarray(_image(1)).save(tmp_path / "store" / "c.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "store" / "c.png")
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [["a.png", 0], ["b.png", 1]])
    assert len(load_image_folder(tmp_path, verbose=0).images) == 2
    # the same file under two names is named twice
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [["b.png", 0], ["store/c.png", 1]])
    with pytest.raises(ValueError, match=r"'b\.png' = 'store/c\.png' \(rows 2, 3\)"):
        load_image_folder(tmp_path, verbose=0)


def test_listing_refuses_symlinks_out_of_the_folder(tmp_path):
    outside = tmp_path / "outside.png"
    Image.fromarray(_image(0)).save(outside)
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(_image(1)).save(data / "a.png")
    (data / "b.png").symlink_to(outside)
    with pytest.raises(ValueError, match=r"1 of the 2 image files in .* lie outside .*'b\.png'"):
        load_image_folder(data, verbose=0)
    assert len(load_image_folder(data, allow_outside=True, verbose=0).images) == 2


def test_latin1_csv_says_how_to_read_it(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    Image.fromarray(_image(1)).save(tmp_path / "b.png")
    text = "file,label\na.png,elliptique\nb.png,spirale barrée\n"
    (tmp_path / "labels.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(
        ValueError, match=r"is not utf-8 text \(byte 0xe9 on line 3\).*encoding='latin-1'"
    ) as err:
        load_image_folder(tmp_path, verbose=0)
    assert "iconv" in str(err.value) and err.value.__cause__ is None
    data = load_image_folder(tmp_path, encoding="latin-1", verbose=0)
    assert data.target_names.tolist() == ["elliptique", "spirale barrée"]


def test_utf8_csv_with_byte_order_mark(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    (tmp_path / "labels.csv").write_bytes("file,label\na.png,é\n".encode("utf-8-sig"))
    for encoding in ("utf-8", "UTF8"):
        data = load_image_folder(tmp_path, encoding=encoding, verbose=0)
        assert data.target_names.tolist() == ["é"]


def test_unknown_encoding(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [["a.png", 0]])
    with pytest.raises(ValueError, match="encoding='klingon' is not a text encoding"):
        load_image_folder(tmp_path, encoding="klingon", verbose=0)


# ------------------------------------------------------------------ memory
def test_images_are_written_into_one_array(tmp_path, monkeypatch):
    import tracemalloc

    import galaxysim.datasets._folder as module

    monkeypatch.setattr(module, "_BATCH", 2)  # few images in flight, so copies show
    rng = np.random.default_rng(0)
    for i in range(60):
        Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(
            tmp_path / f"{i:02d}.png"
        )
    (tmp_path / "99.png").write_bytes(b"broken")
    with pytest.warns(UserWarning):  # warm up
        load_image_folder(tmp_path, image_size=None, on_error="skip", verbose=0)
    tracemalloc.start()
    try:
        with pytest.warns(UserWarning, match="Skipped 1 of 61"):
            X = load_image_folder(tmp_path, image_size=None, on_error="skip", verbose=0).images
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert X.shape == (60, 128, 128, 3)
    assert X.base is None and X.flags.owndata  # the unused slot was given back
    # a list of framed images then np.stack held two copies: at least 2x
    assert peak < 1.6 * X.nbytes, peak / X.nbytes


def test_broken_link_in_listing_and_empty_file_cells(tmp_path):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 files in .*b\.png.*broken links"):
        load_image_folder(tmp_path, verbose=0)
    _write_csv(tmp_path / "labels.csv", ["file", "label"], [["a.png", 0], ["", 1], [" ", 0]])
    with pytest.raises(
        ValueError, match=r"Column 'file' of .* is empty on 2 row\(s\) \(rows 3, 4;"
    ):
        load_image_folder(tmp_path, verbose=0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"max_pixels": 0}, ValueError, "max_pixels must be a positive int"),
        ({"allow_outside": "no"}, TypeError, "allow_outside must be True or False"),
    ],
)
def test_bad_new_parameters(tmp_path, kwargs, error, match):
    Image.fromarray(_image(0)).save(tmp_path / "a.png")
    with pytest.raises(error, match=match):
        load_image_folder(tmp_path, verbose=0, **kwargs)


# ------------------------------------------------------------------ identifiers are no labels
def _objid_folder(tmp_path, n=30, extra=()):
    rows = []
    for i in range(n):
        Image.fromarray(_image(i, size=16)).save(tmp_path / f"g{i}.png")
        rows.append([f"g{i}.png", 588848901527896238 + 1000 * i, *[c[1](i) for c in extra]])
    _write_csv(tmp_path / "labels.csv", ["file", "sdss_objid", *[c[0] for c in extra]], rows)
    return tmp_path


def test_only_column_an_identifier_loads_unlabelled_in_bounded_memory(tmp_path):
    # `file,sdss_objid`: it used to build range(5.9e17) label names (killed for memory)
    import tracemalloc

    _objid_folder(tmp_path)
    tracemalloc.start()
    with pytest.warns(UserWarning, match=r"'sdss_objid' .* 30 distinct values in 30 rows"):
        data = load_image_folder(tmp_path, verbose=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20
    assert data.target is None and data.target_names is None and data.label_column is None
    assert len(data.images) == 30


def test_label_column_naming_an_identifier_is_an_error(tmp_path):
    _objid_folder(tmp_path, extra=[("morph", lambda i: "ab"[i % 2])])
    with pytest.raises(
        ValueError,
        match=r"'sdss_objid' .* 30 distinct values in 30 rows .*an identifier, not labels\. "
        r"Pass label_column=<name> .*\['morph'\].*labels_csv=False",
    ):
        load_image_folder(tmp_path, label_column="sdss_objid", verbose=0)
    data = load_image_folder(tmp_path, label_column="morph", verbose=0)
    assert data.target_names.tolist() == ["a", "b"]


def test_more_than_a_thousand_classes_is_an_identifier(tmp_path):
    from galaxysim.datasets._folder import _encode_labels

    values = [str(i % 1001) for i in range(5000)]
    with pytest.raises(ValueError, match="more than 1000, the most classes"):
        _encode_labels(values, None, "c", tmp_path / "l.csv", ["file", "c"])
    # a thousand classes of five images are labels
    values = [str(i % 1000) for i in range(5000)]
    target, names = _encode_labels(values, None, "c", tmp_path / "l.csv", ["file", "c"])
    assert len(names) == 1000 and target.max() == 999


def test_large_integer_labels_are_coded_in_sorted_order(tmp_path):
    from galaxysim.datasets._folder import _encode_labels

    target, names = _encode_labels(["70000", "5", "70000", "5"], None, "c", "l.csv", [])
    assert target.tolist() == [1, 0, 1, 0] and names.tolist() == ["5", "70000"]


def test_files_are_relative_to_the_folder(folder, tmp_path):
    path, _, rows = folder
    data = load_image_folder(path, verbose=0)
    assert data.files.tolist() == [r[0] for r in rows]
    assert [Path(f) for f in data.filenames] == [path / r[0] for r in rows]
    # a CSV elsewhere names them relative to itself; files stay relative to the folder
    other = tmp_path / "elsewhere"
    other.mkdir()
    _write_csv(other / "mine.csv", ["file", "kind"], [[f"../{r[0]}", r[2]] for r in rows[:2]])
    data = load_image_folder(path, labels_csv=other / "mine.csv", verbose=0)
    assert data.files.tolist() == [rows[0][0], rows[1][0]]
