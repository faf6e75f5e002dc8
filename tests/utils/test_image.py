"""Known-answer tests of the framing kernels: crop, anti-aliased resize, reframe."""

import numpy as np
import pytest
from skimage.transform import resize as sk_resize

from galaxysim.utils._image import center_crop, frame_images, reframe_images, resize_images


def _arange_images(n, h, w, c, dtype=np.uint8):
    return (np.arange(n * h * w * c) % 251).astype(dtype).reshape(n, h, w, c)


def _smooth_image(n, dtype=np.float32):
    """A smooth, survey-like RGB image in [0, 1]: a Gaussian blob and a slow gradient."""
    yy, xx = np.mgrid[:n, :n] / n
    blob = np.exp(-((yy - 0.5) ** 2 + (xx - 0.45) ** 2) / (2 * 0.15**2))
    return np.stack([blob, 0.7 * blob, 0.5 + 0.5 * np.sin(3 * xx)], axis=-1).astype(dtype)


# ------------------------------------------------------------------ center_crop
def test_center_crop_even_offsets():
    X = _arange_images(2, 8, 8, 3)
    out = center_crop(X, 4)
    assert out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out, X[:, 2:6, 2:6])


def test_center_crop_odd_offsets_round_down():
    # 7 -> 4 leaves 3 spare rows: 1 above, 2 below; 9 -> 4 leaves 5: 2 left, 3 right
    X = _arange_images(1, 7, 9, 3)
    out = center_crop(X, 4)
    np.testing.assert_array_equal(out, X[:, 1:5, 2:6])
    out = center_crop(X, (3, 6))
    np.testing.assert_array_equal(out, X[:, 2:5, 1:7])


def test_center_crop_is_a_view_and_accepts_single_images():
    X = _arange_images(3, 10, 10, 3)
    assert np.shares_memory(center_crop(X, 6), X)
    assert center_crop(X[0], 6).shape == (1, 6, 6, 3)
    assert center_crop(X[0, :, :, 0], 6).shape == (1, 6, 6, 1)


def test_center_crop_full_size_is_identity():
    X = _arange_images(2, 5, 5, 3)
    np.testing.assert_array_equal(center_crop(X, 5), X)


def test_center_crop_too_small_suggests_resize():
    with pytest.raises(ValueError, match=r"8x8 pixels, smaller than the required 16x16.*Resize"):
        center_crop(np.zeros((1, 8, 8, 3), np.uint8), 16)


@pytest.mark.parametrize("size", [0, -3, (4,), (4, 0), (1, 2, 3)])
def test_center_crop_bad_size(size):
    with pytest.raises(ValueError, match="size must be a positive int or"):
        center_crop(np.zeros((1, 8, 8, 3), np.uint8), size)


# ------------------------------------------------------------------ resize_images
def test_integer_factor_area_average_uint8_rounds_half_up():
    X = np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1)
    out = resize_images(X, 2)
    assert out.dtype == np.uint8
    # block means 2.5, 4.5, 10.5, 12.5: rounded half up
    np.testing.assert_array_equal(out[0, :, :, 0], [[3, 5], [11, 13]])


def test_integer_factor_area_average_uint8_rounding_below_half():
    X = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], np.uint8).reshape(1, 3, 3, 1)
    X = np.tile(X, (1, 1, 1, 3))  # 3 channels, factor 3: mean 1/9 -> 0
    out = resize_images(X, 1)
    np.testing.assert_array_equal(out, np.zeros((1, 1, 1, 3), np.uint8))
    X[0, :2, :, :] = 255  # mean 6 * 255 / 9 = 170 exactly
    np.testing.assert_array_equal(resize_images(X, 1)[0, 0, 0], [170, 170, 170])


def test_integer_factor_area_average_float32():
    X = (np.arange(16, dtype=np.float32) / 16).reshape(1, 4, 4, 1)
    out = resize_images(X, 2)
    assert out.dtype == np.float32
    expected = np.array([[2.5, 4.5], [10.5, 12.5]], np.float32) / 16
    np.testing.assert_allclose(out[0, :, :, 0], expected, rtol=1e-6)


def test_integer_factor_rectangular_and_batched():
    rng = np.random.default_rng(1)
    X = rng.integers(0, 256, (3, 6, 8, 3), dtype=np.uint8)
    out = resize_images(X, (3, 2))
    ref = X.reshape(3, 3, 2, 2, 4, 3).astype(np.float64).mean(axis=(2, 4))
    np.testing.assert_array_equal(out, np.floor(ref + 0.5).astype(np.uint8))


def test_same_size_returns_input():
    X = _arange_images(2, 8, 8, 3)
    assert resize_images(X, 8) is X


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(30, 20), (20, 45)], ids=["shrink", "grow"])
def test_non_integer_factor_preserves_dtype_and_constants(dtype, channels, size):
    value = 77 if dtype == np.uint8 else 0.3
    X = np.full((2, 31, 29, channels), value, dtype=dtype)
    out = resize_images(X, size)
    assert out.dtype == dtype
    assert out.shape == (2, *size, channels)
    if dtype == np.uint8:
        np.testing.assert_array_equal(out, value)
    else:
        np.testing.assert_allclose(out, value, atol=1e-6)


def test_float_resize_stays_in_unit_range():
    # Lanczos overshoots at sharp edges; the result is clipped back to [0, 1]
    X = np.zeros((1, 45, 45, 3), np.float32)
    X[:, 20:25] = 1.0
    out = resize_images(X, 30)
    assert out.min() >= 0.0
    assert out.max() <= 1.0


@pytest.mark.parametrize("n", [96, 100, 128, 256, 69])
def test_matches_skimage_antialiased_resize(n):
    img = _smooth_image(n)
    ref = sk_resize(img.astype(np.float64), (64, 64), anti_aliasing=True)
    np.testing.assert_allclose(resize_images(img[None], 64)[0], ref, atol=0.005)
    u8 = np.rint(img * 255).astype(np.uint8)
    np.testing.assert_allclose(resize_images(u8[None], 64)[0] / 255, ref, atol=0.01)


def test_resize_bad_output_size():
    with pytest.raises(ValueError, match="output_size must be a positive int"):
        resize_images(np.zeros((1, 8, 8, 3), np.uint8), 0)


# ------------------------------------------------------------------ frame_images
def test_frame_images_crops_then_resizes():
    X = _arange_images(2, 40, 40, 3)
    out = frame_images(X, crop=20, image_size=10)
    np.testing.assert_array_equal(out, resize_images(X[:, 10:30, 10:30], 10))
    assert out.shape == (2, 10, 10, 3)


def test_frame_images_no_crop_resizes_whole_frame():
    X = _arange_images(1, 40, 40, 3)
    np.testing.assert_array_equal(frame_images(X, image_size=20), resize_images(X, 20))


def test_frame_images_crop_only():
    X = _arange_images(1, 40, 40, 3)
    out = frame_images(X, crop=16, image_size=None)
    np.testing.assert_array_equal(out, X[:, 12:28, 12:28])
    np.testing.assert_array_equal(frame_images(X, crop=16, image_size=16), out)


def test_frame_images_keeps_everything_when_nothing_asked():
    X = _arange_images(1, 12, 12, 3)
    np.testing.assert_array_equal(frame_images(X, image_size=None), X)


def test_frame_images_crop_too_large():
    with pytest.raises(ValueError, match="smaller than the required 64x64"):
        frame_images(np.zeros((1, 40, 40, 3), np.uint8), crop=64)


# ------------------------------------------------------------------ reframe_images
def test_reframe_size_and_centre_content():
    X = np.full((32, 32, 3), 255, np.uint8)
    out = reframe_images(X, image_size=64, fill_fraction=0.5)
    assert out.shape == (1, 64, 64, 3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 16:48, 16:48], 255)
    inside = np.zeros((64, 64), bool)
    inside[16:48, 16:48] = True
    np.testing.assert_array_equal(out[0][~inside], 0)


def test_reframe_shrinks_the_image():
    # a frame-filling image: after reframing its content spans fill_fraction of the frame
    X = np.zeros((1, 100, 100, 3), np.float32)
    X[:, 25:75, 25:75] = 1.0  # the middle half
    out = reframe_images(X, image_size=40, fill_fraction=0.5)  # inner 20 px, top 10
    assert out.dtype == np.float32
    lit = np.argwhere(out[0, :, :, 0] > 0.5)
    assert lit.min(axis=0).tolist() == [15, 15]
    assert lit.max(axis=0).tolist() == [24, 24]


def test_reframe_sky_level():
    X = np.zeros((2, 10, 10, 3), np.float32)
    out = reframe_images(X, image_size=20, fill_fraction=0.5, sky_level=0.1)
    # a dark image pasted onto brighter sky does not darken it
    np.testing.assert_allclose(out, 0.1, rtol=1e-6)
    u8 = reframe_images(np.zeros((10, 10, 3), np.uint8), image_size=20, sky_level=0.2)
    np.testing.assert_array_equal(u8, 51)


def test_reframe_noise_reproducible_and_clipped():
    X = np.full((2, 16, 16, 3), 0.5, np.float32)
    kw = dict(image_size=24, fill_fraction=0.5, sky_level=0.05, noise_sigma=0.02)
    a = reframe_images(X, random_state=0, **kw)
    b = reframe_images(X, random_state=0, **kw)
    c = reframe_images(X, random_state=1, **kw)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0
    corner = a[:, :6, :6]
    assert abs(float(corner.mean()) - 0.05) < 0.01
    assert 0.01 < float(corner.std()) < 0.03


def test_reframe_uint8_noise_stays_uint8():
    X = np.full((1, 16, 16, 3), 128, np.uint8)
    out = reframe_images(X, image_size=24, noise_sigma=0.05, random_state=3)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(
        out, reframe_images(X, image_size=24, noise_sigma=0.05, random_state=3)
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fill_fraction": 0}, r"fill_fraction must be in \(0, 1\]"),
        ({"fill_fraction": 1.5}, r"fill_fraction must be in \(0, 1\]"),
        ({"sky_level": -0.1}, r"sky_level must be in \[0, 1\]"),
        ({"sky_level": 2}, r"sky_level must be in \[0, 1\]"),
        ({"noise_sigma": -1}, "noise_sigma >= 0"),
    ],
)
def test_reframe_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        reframe_images(np.zeros((1, 8, 8, 3), np.uint8), **kwargs)


def test_reframe_validates_images():
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        reframe_images(np.full((1, 8, 8, 3), 3.0))
