"""read_image: the one image reader (queries, catalogue folders, the Milky Way illustration)."""

import contextlib
import os
import signal
import struct
import sys
import tracemalloc
import types
import warnings
import zlib

import numpy as np
import PIL.Image
import pytest
from PIL import Image

from galaxysim.datasets import load_milky_way
from galaxysim.utils._image import center_crop
from galaxysim.utils._imread import (
    ImageReadError,
    ImageTooLargeError,
    _robust_range,
    read_image,
)


def huge_png(path, width, height):
    """A valid PNG header declaring width x height, a few bytes on disk (no pixel data)."""

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    return path


@contextlib.contextmanager
def fails_instead_of_hanging(seconds=5):
    def alarm(signum, frame):
        raise AssertionError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _deep(shape=(60, 80), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.gamma(2.0, 3000.0, size=shape)).clip(0, 65535).astype(dtype)


# ------------------------------------------------------------------ pixels
def test_sixteen_bit_grey_png_is_rescaled_not_clipped(tmp_path):
    a = _deep()
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode == "I;16"
    img = read_image(path)
    assert img.shape == (60, 80, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img[..., 0], img[..., 2])
    lo, hi = np.percentile(a, [0.5, 99.5])
    expected = np.rint(np.clip((a - lo) / (hi - lo), 0, 1) * 255)
    assert np.abs(img[..., 0] - expected).max() <= 1  # float rounding at .5 only
    # Pillow's convert("RGB") clips: almost everything is 255
    assert (np.asarray(Image.open(path).convert("RGB")) == 255).mean() > 0.9
    assert (img == 255).mean() < 0.02


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32])
def test_robust_range_is_numpys_percentile(dtype):
    a = _deep(dtype=dtype)
    if dtype == np.float32:
        a[3, 4], a[5, 6], a[7, 8] = np.nan, np.inf, -np.inf  # counted as 0
    ref = np.percentile(np.nan_to_num(a.astype(np.float64), posinf=0, neginf=0), [0.5, 99.5])
    np.testing.assert_allclose(_robust_range(a), ref, rtol=1e-12)


@pytest.mark.parametrize(
    "mode, ext",
    [
        ("RGB", "png"),
        ("L", "png"),
        ("P", "png"),
        ("RGBA", "png"),
        ("LA", "png"),
        ("1", "png"),
        ("CMYK", "tif"),
        ("RGB", "jpg"),
        ("I;16", "png"),
        ("I", "tif"),
        ("F", "tif"),
    ],
)
def test_every_mode_gives_rgb_and_crop_is_the_central_part(tmp_path, mode, ext):
    rng = np.random.default_rng(1)
    if mode in ("I;16", "I", "F"):
        im = Image.fromarray(_deep(dtype={"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]))
    else:
        im = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).convert(mode)
    path = tmp_path / f"img.{ext}"
    im.save(path)
    img = read_image(path)
    assert img.shape == (60, 80, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    if mode not in ("I;16", "I", "F"):  # 8-bit: exactly Pillow's conversion
        with Image.open(path) as ref:
            np.testing.assert_array_equal(img, np.asarray(ref.convert("RGB")))
    np.testing.assert_array_equal(read_image(path, crop=31), center_crop(img[None], 31)[0])


def test_crop_larger_than_image(tmp_path):
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"crop=45 is larger than image .*small\.png \(40x50"):
        read_image(tmp_path / "small.png", crop=45)


@pytest.mark.parametrize("kwargs", [{"crop": 0}, {"crop": 2.5}, {"max_pixels": True}])
def test_bad_parameters(tmp_path, kwargs):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="must be a positive int or None"):
        read_image(tmp_path / "a.png", **kwargs)


def test_draft_size_decodes_jpeg_at_a_reduced_scale(tmp_path):
    Image.fromarray(np.full((400, 400, 3), 90, np.uint8)).save(tmp_path / "big.jpg")
    assert read_image(tmp_path / "big.jpg", draft_size=(100, 100)).shape == (100, 100, 3)
    assert read_image(tmp_path / "big.jpg", draft_size=(101, 101)).shape == (200, 200, 3)


def test_fits_needs_astropy(tmp_path, monkeypatch):
    import galaxysim.utils._imread as module

    monkeypatch.setattr(module, "_has_astropy", lambda: False)
    (tmp_path / "g.fits").write_bytes(b"SIMPLE  =                    T")
    with pytest.raises(ImageReadError, match=r"Cannot read .*g\.fits: FITS files need astropy"):
        read_image(tmp_path / "g.fits")


def test_fits_scaled_like_a_deep_png(tmp_path, monkeypatch):
    # a stand-in for astropy.io.fits: the same data as a FITS file or a 16-bit PNG
    import galaxysim.utils._imread as module

    a = _deep()
    fits = types.SimpleNamespace(getdata=lambda p: a.astype(">i4"))  # FITS is big-endian
    io = types.ModuleType("astropy.io")
    io.fits = fits
    monkeypatch.setitem(sys.modules, "astropy", types.ModuleType("astropy"))
    monkeypatch.setitem(sys.modules, "astropy.io", io)
    monkeypatch.setitem(sys.modules, "astropy.io.fits", fits)
    monkeypatch.setattr(module, "_has_astropy", lambda: True)
    (tmp_path / "g.fits").write_bytes(b"")
    Image.fromarray(a).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.fits"), read_image(tmp_path / "g.png"))
    with pytest.raises(ImageTooLargeError, match="60x80 pixels|80x60 pixels"):
        read_image(tmp_path / "g.fits", max_pixels=100)


# ------------------------------------------------------------------ one reader everywhere
def test_milky_way_illustration_uses_the_same_reader(tmp_path):
    a = _deep(shape=(300, 300))
    Image.fromarray(a).save(tmp_path / "mw16.png")
    Image.fromarray(read_image(tmp_path / "mw16.png")).save(tmp_path / "mw8.png")
    deep = load_milky_way(kind="illustration", path=tmp_path / "mw16.png")
    np.testing.assert_array_equal(
        deep, load_milky_way(kind="illustration", path=tmp_path / "mw8.png")
    )


# ------------------------------------------------------------------ what is refused
def test_decompression_bomb_is_a_clear_error_before_decoding(tmp_path):
    path = huge_png(tmp_path / "bomb.png", 14000, 14000)
    before = PIL.Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLargeError) as err:
            read_image(path)
    msg = str(err.value)
    assert str(path) in msg and "14000x14000 pixels (196,000,000 pixels)" in msg
    assert f"{2 * before:,} pixels accepted" in msg and "max_pixels=" in msg
    assert err.value.size == (14000, 14000) and err.value.limit == 2 * before
    assert not seen  # no DecompressionBombWarning either
    assert before == PIL.Image.MAX_IMAGE_PIXELS  # Pillow's setting untouched


def test_max_pixels_is_the_limit(tmp_path):
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ImageTooLargeError, match=r"100x100 pixels .*more than the 9,999 pixels"):
        read_image(tmp_path / "a.png", max_pixels=9999)
    assert read_image(tmp_path / "a.png", max_pixels=10000).shape == (100, 100, 3)
    # a lifted limit reads what Pillow alone would refuse: the header-only file then
    # fails as truncated, not as a bomb
    huge_png(tmp_path / "huge.png", 200, 200)
    with pytest.raises(ImageReadError, match="corrupt, truncated") as err:
        read_image(tmp_path / "huge.png", max_pixels=10**6)
    assert not isinstance(err.value, ImageTooLargeError)


def test_follows_pillows_limit_without_its_warning(tmp_path, monkeypatch):
    # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; read_image
    # reads the program's setting, refuses above twice it and never warns
    import galaxysim.utils._imread as module

    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 5000)
    monkeypatch.setattr(module, "_CHUNK", 6400)  # bands of rows, each within Pillow's limit
    Image.fromarray(np.zeros((100, 80, 3), np.uint8)).save(tmp_path / "warned.png")  # 8000 px
    Image.fromarray(np.zeros((110, 100, 3), np.uint8)).save(tmp_path / "refused.png")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert read_image(tmp_path / "warned.png").shape == (100, 80, 3)
        assert read_image(tmp_path / "warned.png", crop=80).shape == (80, 80, 3)
        with pytest.raises(ImageTooLargeError, match="10,000 pixels accepted"):
            read_image(tmp_path / "refused.png")
    assert not seen
    with pytest.warns(PIL.Image.DecompressionBombWarning):  # what Pillow alone does
        Image.open(tmp_path / "warned.png").close()


def test_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with fails_instead_of_hanging(), pytest.raises(ValueError, match=r"named pipe \(FIFO\)"):
        read_image(tmp_path / "pipe.png")


def test_missing_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"Image .*nope\.png does not exist"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(IsADirectoryError, match="is a folder, not a file"):
        read_image(tmp_path)


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"x" * 40])
def test_corrupt_files_name_the_file(tmp_path, data):
    (tmp_path / "bad.png").write_bytes(data)
    with pytest.raises(ImageReadError, match=r"Cannot read image .*bad\.png: the file is") as e:
        read_image(tmp_path / "bad.png")
    assert isinstance(e.value, ValueError) and e.value.path == tmp_path / "bad.png"


# ------------------------------------------------------------------ memory
@pytest.mark.parametrize("mode", ["I;16", "RGB"])
def test_memory_is_about_the_output(tmp_path, mode):
    # numpy's allocations are traced: a 16-bit frame used to cost 21x its RGB output
    # (a float32 stack of 3 channels, float64 percentile copies)
    rng = np.random.default_rng(0)
    if mode == "I;16":
        Image.fromarray(_deep(shape=(1000, 1000))).save(tmp_path / "a.png")
    else:
        Image.fromarray(rng.integers(0, 256, (1000, 1000, 3), dtype=np.uint8)).save(
            tmp_path / "a.png"
        )
    read_image(tmp_path / "a.png")  # warm up (plugin imports)
    tracemalloc.start()
    try:
        out = read_image(tmp_path / "a.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * out.nbytes, peak / out.nbytes
