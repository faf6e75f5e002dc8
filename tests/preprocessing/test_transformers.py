"""Image transformers: the image-estimator contract, dtypes, round trips, clear errors."""

import numpy as np
import pytest
from sklearn.base import clone

from galaxysim.preprocessing import CenterCrop, Crop64, PixelFlatten, Reframe, Resize
from galaxysim.utils.estimator_checks import (
    IMAGE_CHECKS,
    check_batch_and_order,
    check_image_estimator,
)

RNG = np.random.default_rng(0)
X12 = RNG.integers(0, 256, size=(5, 12, 12, 3), dtype=np.uint8)
X70 = RNG.integers(0, 256, size=(3, 70, 70, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "estimator, X",
    [
        (CenterCrop(size=8), X12),
        (CenterCrop(size=(6, 10)), X12),
        (Crop64(size=8), X12),
        (Crop64(), X70),
        (Resize(output_size=6), X12),  # integer factor: area average
        (Resize(output_size=7), X12),  # Pillow Lanczos
        (Resize(output_size=(20, 9)), X12),
        (Reframe(image_size=16, fill_fraction=0.5), X12),
        (Reframe(image_size=16, sky_level=0.05, noise_sigma=0.0), X12),
        (PixelFlatten(), X12),
    ],
    ids=lambda v: repr(v) if not isinstance(v, np.ndarray) else f"X{v.shape[1]}",
)
def test_image_estimator_checks(estimator, X):
    check_image_estimator(estimator, X)


def test_image_estimator_checks_float_input():
    Xf = (X12 / 255).astype(np.float32)
    for est in (CenterCrop(size=8), Resize(output_size=7), PixelFlatten(), Reframe(image_size=16)):
        check_image_estimator(est, Xf)


def test_reframe_with_noise_checks():
    # The sky noise is drawn for the whole batch in one call, so one query at a time
    # gets other noise than the same query in a batch: check_batch_and_order does not
    # apply. Everything else (random_state reproducibility included) must hold.
    checks = [c for c in IMAGE_CHECKS if c is not check_batch_and_order]
    check_image_estimator(
        Reframe(image_size=16, noise_sigma=0.02, random_state=0), X12, checks=checks
    )


# ------------------------------------------------------------------ behaviour
def test_center_crop_output():
    out = CenterCrop(size=8).fit_transform(X12)
    np.testing.assert_array_equal(out, X12[:, 2:10, 2:10])
    assert out.flags.c_contiguous
    assert out.dtype == np.uint8


def test_crop64_default_is_64_and_searchable():
    assert Crop64().size == 64
    assert Crop64().fit_transform(X70).shape == (3, 64, 64, 3)
    assert Crop64().set_params(size=32).fit_transform(X70).shape == (3, 32, 32, 3)
    assert clone(Crop64(size=48)).get_params() == {"size": 48}


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_resize_preserves_dtype(dtype):
    X = X12 if dtype == np.uint8 else (X12 / 255).astype(dtype)
    for size in (6, 7, 24):
        out = Resize(output_size=size).fit_transform(X)
        assert out.dtype == dtype
        assert out.shape == (5, size, size, 3)


def test_resize_float64_becomes_float32():
    assert Resize(output_size=6).fit_transform(X12 / 255.0).dtype == np.float32


def test_reframe_output():
    out = Reframe(image_size=24, fill_fraction=0.5).fit_transform(
        np.full((2, 12, 12, 3), 255, np.uint8)
    )
    assert out.shape == (2, 24, 24, 3)
    np.testing.assert_array_equal(out[:, 6:18, 6:18], 255)
    assert out[:, :6].max() == 0


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_pixel_flatten_dtype_and_round_trip(dtype):
    X = X12 if dtype == np.uint8 else (X12 / 255).astype(dtype)
    flat = PixelFlatten().fit(X)
    rows = flat.transform(X)
    assert rows.shape == (5, 12 * 12 * 3)
    assert rows.dtype == dtype
    # row order is height, width, channel (C order), as X.reshape(n, -1)
    np.testing.assert_array_equal(rows, X.reshape(5, -1))
    back = flat.inverse_transform(rows)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, X)


def test_pixel_flatten_single_image_query():
    flat = PixelFlatten().fit(X12)
    np.testing.assert_array_equal(flat.transform(X12[0]), X12[:1].reshape(1, -1))


def test_pixel_flatten_inverse_transform_bad_rows():
    flat = PixelFlatten().fit(X12)
    with pytest.raises(ValueError, match=r"Expected rows of 432 values \(images \(12, 12, 3\)\)"):
        flat.inverse_transform(np.zeros((2, 431)))
    with pytest.raises(ValueError, match="Expected rows of 432 values"):
        flat.inverse_transform(np.zeros(432))


def test_query_of_another_size_than_fitted():
    flat = PixelFlatten().fit(X12)
    with pytest.raises(
        ValueError,
        match=r"X images are 16x16x3 but the estimator was fitted on 12x12x3 images of the "
        r"catalogue\. Put a Resize\(output_size=12\) or CenterCrop\(size=12\)",
    ):
        flat.transform(np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="1 channels but the estimator was fitted on 3-channel"):
        flat.transform(np.zeros((1, 12, 12), np.uint8))


def test_crop_query_smaller_than_crop():
    crop = Crop64().fit(X70)
    with pytest.raises(
        ValueError,
        match=r"X images are 40x40 pixels, smaller than the required 64x64\. "
        r"Resize them first \(galaxysim\.preprocessing\.Resize\(output_size=64\)\)",
    ):
        crop.transform(np.zeros((1, 40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match="smaller than the required 64x64"):
        Crop64().fit_transform(X12)


def test_crop_then_resize_frames_any_query():
    # crop + resize accept a query of another size than the catalogue
    crop = CenterCrop(size=8).fit(X12)
    assert crop.transform(X70).shape == (3, 8, 8, 3)
    resize = Resize(output_size=12).fit(X12)
    assert resize.transform(X70).shape == (3, 12, 12, 3)


@pytest.mark.parametrize(
    "estimator, match",
    [
        (CenterCrop(size=0), "'size' parameter of CenterCrop must be an int in the range"),
        (CenterCrop(size=-4), "'size' parameter of CenterCrop"),
        (CenterCrop(size=8.5), "'size' parameter of CenterCrop"),
        (CenterCrop(size=True), "'size' parameter of CenterCrop must not be a bool"),
        (CenterCrop(size=(8,)), "size must be a positive int or a"),
        (CenterCrop(size=(8, 0)), "size must be a positive int or a"),
        (CenterCrop(size=(8, True)), "size must be a positive int or a"),
        (CenterCrop(size="64"), "'size' parameter of CenterCrop"),
        (Crop64(size=None), "'size' parameter of Crop64"),
        (Resize(output_size=0), "'output_size' parameter of Resize"),
        (Resize(output_size=(4, 4, 4)), "output_size must be a positive int"),
        (Reframe(image_size=0), "'image_size' parameter of Reframe"),
    ],
    ids=repr,
)
def test_bad_size_params_raise_in_fit(estimator, match):
    with pytest.raises(ValueError, match=match):
        estimator.fit(X12)
    with pytest.raises(ValueError, match=match):  # stateless: transform validates too
        estimator.transform(X12)


@pytest.mark.parametrize(
    "estimator", [CenterCrop(size=8), Resize(output_size=6), Reframe(image_size=16)], ids=repr
)
def test_stateless_transformers_need_no_fit(estimator):
    from sklearn.utils import get_tags

    assert get_tags(estimator).requires_fit is False
    np.testing.assert_array_equal(
        clone(estimator).transform(X12), clone(estimator).fit(X12).transform(X12)
    )


def test_pixel_flatten_needs_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        PixelFlatten().transform(X12)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"fill_fraction": 0.0}, r"'fill_fraction' parameter of Reframe .* range \(0.0, 1.0\]"),
        ({"fill_fraction": 2.0}, r"'fill_fraction' parameter of Reframe .* range \(0.0, 1.0\]"),
        ({"fill_fraction": float("nan")}, "'fill_fraction' parameter"),
        ({"sky_level": 1.5}, r"'sky_level' parameter of Reframe .* range \[0.0, 1.0\]"),
        ({"sky_level": -0.5}, r"'sky_level' parameter of Reframe"),
        ({"noise_sigma": -0.1}, "'noise_sigma' parameter of Reframe"),
        ({"noise_sigma": float("inf")}, "'noise_sigma' parameter of Reframe"),
        ({"random_state": "seed"}, "'random_state' parameter of Reframe"),
    ],
)
def test_reframe_bad_params_raise_in_fit(params, match):
    with pytest.raises(ValueError, match=match):
        Reframe(image_size=16, **params).fit(X12)


def test_init_only_stores_parameters():
    # validation happens in fit, so that clone / set_params never fail
    est = CenterCrop(size=-1)
    assert est.get_params() == {"size": -1}
    assert clone(est).size == -1


# ------------------------------------------------------------------ audit siblings (issue 10)
@pytest.mark.parametrize(
    "X, match",
    [
        (
            np.where(np.arange(5)[:, None, None, None] == 1, np.nan, X12 / 255.0),
            "432 NaN pixel values, in 1 of 5 images",
        ),
        (X12.astype(np.float32), r"float pixel values outside \[0, 1\]"),
    ],
)
def test_center_crop_validates_pixels_like_the_other_transformers(X, match):
    with pytest.raises(ValueError, match=match):
        CenterCrop(size=8).transform(X)
    with pytest.raises(ValueError, match=match):
        Resize(output_size=8).transform(X)


@pytest.mark.parametrize(
    "estimator, what",
    [
        (Resize(output_size=10**6), r"Resize of 5 images to 1000000x1000000 pixels"),
        (Reframe(image_size=10**6), r"Reframe of 5 images to 1000000x1000000 pixels"),
    ],
)
def test_huge_outputs_are_refused_before_allocating(estimator, what):
    with pytest.raises(MemoryError, match=rf"{what} would take .* of memory, but only .*fewer"):
        estimator.fit_transform(X12)


def test_reframe_noise_above_one_is_refused():
    with pytest.raises(ValueError, match=r"'noise_sigma' parameter of Reframe .*\[0.0, 1.0\]"):
        Reframe(noise_sigma=1e300).fit_transform(X12)
    assert Reframe(image_size=16, noise_sigma=1.0, random_state=0).fit_transform(X12).shape == (
        5,
        16,
        16,
        3,
    )


def test_pixel_flatten_inverse_transform_refuses_text():
    flat = PixelFlatten().fit(X12)
    with pytest.raises(TypeError, match="Rows must be real numbers .* dtype <U1"):
        flat.inverse_transform([["a"] * 432])
