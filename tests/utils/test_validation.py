"""Tests of the one image validator: accepted forms, dtype rules, and every error message."""

import numpy as np
import pytest

from galaxysim.utils.validation import check_image_shape, check_images, check_labels

RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, size=(4, 8, 10, 3), dtype=np.uint8)


# ------------------------------------------------------------------ accepted forms
def test_batch_is_returned_as_is():
    out = check_images(U8)
    assert out.shape == (4, 8, 10, 3)
    assert out.dtype == np.uint8
    assert np.shares_memory(out, U8)  # no copy when nothing needs converting


def test_single_rgb_image_gets_a_batch_axis():
    out = check_images(U8[0])
    assert out.shape == (1, 8, 10, 3)
    np.testing.assert_array_equal(out[0], U8[0])


def test_single_one_channel_image_gets_a_batch_axis():
    out = check_images(U8[0, :, :, :1])
    assert out.shape == (1, 8, 10, 1)


def test_grey_image_gets_batch_and_channel_axes():
    out = check_images(U8[0, :, :, 0])
    assert out.shape == (1, 8, 10, 1)
    np.testing.assert_array_equal(out[0, :, :, 0], U8[0, :, :, 0])


def test_grey_batch_gets_a_channel_axis():
    grey = U8[..., 0]  # (4, 8, 10): last axis is neither 1 nor 3
    out = check_images(grey)
    assert out.shape == (4, 8, 10, 1)
    np.testing.assert_array_equal(out[..., 0], grey)


def test_list_of_images_is_stacked():
    out = check_images([U8[0], U8[1], U8[2]])
    assert out.shape == (3, 8, 10, 3)
    np.testing.assert_array_equal(out, U8[:3])


def test_list_of_images_of_different_shapes_is_rejected():
    with pytest.raises(ValueError, match="different shapes.*Resize"):
        check_images([U8[0], U8[0, :4]])


@pytest.mark.parametrize("single", [U8[0], U8[0, :, :, 0]])
def test_allow_single_false_rejects_single_images(single):
    with pytest.raises(ValueError, match=r"expected images as \(n_samples, height, width"):
        check_images(single, allow_single=False)


# ------------------------------------------------------------------ dtypes
def test_uint8_kept():
    assert check_images(U8).dtype == np.uint8


def test_float32_kept_without_copy():
    X = (U8 / 255).astype(np.float32)
    out = check_images(X)
    assert out.dtype == np.float32
    assert np.shares_memory(out, X)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_floats_become_float32(dtype):
    X = (U8 / 255).astype(dtype)
    out = check_images(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, X.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint16, np.int16])
def test_integers_in_0_255_become_uint8(dtype):
    out = check_images(U8.astype(dtype))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, U8)


def test_bool_becomes_0_or_255():
    mask = np.zeros((2, 5, 5), dtype=bool)
    mask[0, 1, 1] = True
    out = check_images(mask)
    assert out.dtype == np.uint8
    assert out.shape == (2, 5, 5, 1)
    assert out[0, 1, 1, 0] == 255
    assert out.sum() == 255


def test_float_range_tolerates_rounding():
    X = np.full((1, 2, 2, 3), 1 + 1e-7, dtype=np.float64)
    assert check_images(X).dtype == np.float32


def test_range_and_finite_checks_can_be_switched_off():
    X = np.full((1, 2, 2, 3), 2.0)
    assert check_images(X, check_range=False).max() == 2.0
    X[0, 0, 0, 0] = np.nan
    out = check_images(X, ensure_finite=False, check_range=False)
    assert np.isnan(out[0, 0, 0, 0])


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "shape", [(5,), (2, 3, 4, 5, 3), (1, 1, 2, 2, 2, 3)], ids=["1d", "5d", "6d"]
)
def test_wrong_ndim(shape):
    with pytest.raises(ValueError, match=r"expected images as \(n_samples, height, width"):
        check_images(np.zeros(shape, np.uint8))


def test_wrong_ndim_message_names_shape_and_fix():
    with pytest.raises(ValueError, match=r"X has shape \(6, 48\).*PixelFlatten"):
        check_images(np.zeros((6, 48)), allow_single=False)


def test_custom_name_in_messages():
    with pytest.raises(ValueError, match="query has shape"):
        check_images(np.zeros(5), name="query")


def test_rgba_rejected_with_fix():
    with pytest.raises(ValueError, match=r"4 channels \(RGBA\?\).*X\[\.\.\., :3\]"):
        check_images(np.zeros((2, 8, 8, 4), np.uint8))


def test_five_channels_rejected_with_fix():
    with pytest.raises(ValueError, match=r"5 channels; expected 1 \(grey\) or 3 \(RGB\).*moveaxis"):
        check_images(np.zeros((2, 8, 8, 5), np.uint8))


def test_channels_first_rejected():
    with pytest.raises(ValueError, match="8 channels.*channels-first"):
        check_images(np.zeros((2, 3, 8, 8), np.uint8))


@pytest.mark.parametrize(
    "bad, what", [(np.nan, "1 NaN pixel value"), (np.inf, "1 infinite"), (-np.inf, "1 infinite")]
)
def test_nan_and_inf_rejected(bad, what):
    X = np.zeros((3, 4, 4, 3))
    X[1, 2, 2, 0] = bad
    with pytest.raises(ValueError, match=rf"X contains {what}.*, in 1 of 3 images \(index 1\)"):
        check_images(X)


def test_nan_message_counts_nan_and_inf_separately():
    X = np.full((6, 4, 4, 3), 0.5, np.float32)
    X[0, 0, 0] = np.nan  # 3 NaN in image 0
    X[4, 1, 1, 1] = np.nan
    X[4, 2, 2, 2] = np.inf
    with pytest.raises(ValueError) as err:
        check_images(X, name="queries")
    msg = str(err.value)
    assert msg.startswith("queries contains 4 NaN pixel values and 1 infinite pixel value, ")
    assert "in 2 of 6 images (index 0, 4)" in msg
    assert "np.nan_to_num(queries, nan=0.0" in msg


def test_nan_allowed_when_not_ensure_finite_but_range_still_checked():
    X = np.full((1, 4, 4, 3), 0.5, np.float32)
    X[0, 0, 0, 0] = np.nan
    assert np.isnan(check_images(X, ensure_finite=False)).sum() == 1
    X[0, 1, 1, 1] = 2.0  # NaN used to hide the out-of-range value from min/max
    with pytest.raises(ValueError, match=r"outside \[0, 1\] \(1 of 48; min 0.5, max 2\)"):
        check_images(X, ensure_finite=False)


def test_out_of_range_messages_count_the_values():
    X = np.zeros((2, 4, 4, 1), np.int64)
    X[0, 0, 0, 0], X[1, 0, 0, 0] = 300, 65535
    with pytest.raises(ValueError, match=r"outside 0-255 \(2 of 32; min 0, max 65535\).*65535"):
        check_images(X)


def test_empty_batch_rejected():
    with pytest.raises(ValueError, match=r"X is empty: got shape \(0, 8, 8, 3\)"):
        check_images(np.zeros((0, 8, 8, 3), np.uint8))


def test_zero_sized_image_rejected():
    with pytest.raises(ValueError, match="is empty"):
        check_images(np.zeros((2, 0, 8, 3), np.uint8))


def test_empty_list_rejected():
    with pytest.raises(ValueError, match="X is empty: got 0 images"):
        check_images([])


@pytest.mark.parametrize("value", [-0.5, 1.5, 255.0])
def test_floats_outside_unit_range(value):
    X = np.full((1, 4, 4, 3), 0.5)
    X[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match=r"float pixel values outside \[0, 1\].*X / 255"):
        check_images(X)


@pytest.mark.parametrize("value", [-1, 256, 4095])
def test_integers_outside_0_255(value):
    X = np.zeros((1, 4, 4, 3), dtype=np.int64)
    X[0, 0, 0, 0] = value
    with pytest.raises(ValueError, match=r"integer pixel values outside 0-255"):
        check_images(X)


def test_min_size_int_suggests_resize():
    with pytest.raises(
        ValueError, match=r"8x10 pixels, smaller than the required 16x16.*Resize\(output_size=16\)"
    ):
        check_images(U8, min_size=16)


def test_min_size_pair():
    assert check_images(U8, min_size=(8, 10)).shape == U8.shape
    with pytest.raises(ValueError, match=r"smaller than the required 8x11.*output_size=11"):
        check_images(U8, min_size=(8, 11))


@pytest.mark.parametrize(
    "X, match",
    [
        (np.array([[["a"]]], dtype=object), "numeric array of images; got dtype object"),
        (np.array([[["a", "b", "c"]]]), "numeric array of images; got dtype <U1"),
        (np.zeros((1, 2, 2, 3), dtype=np.complex64), "complex dtype complex64"),
    ],
    ids=["object", "str", "complex"],
)
def test_non_numeric_dtypes(X, match):
    with pytest.raises(TypeError, match=match):
        check_images(X)


def test_ragged_list_is_a_clear_error():
    with pytest.raises(ValueError, match="different shapes"):
        check_images([np.zeros((4, 4, 3)), np.zeros((5, 5, 3))])


# ------------------------------------------------------------------ check_image_shape
def test_check_image_shape_accepts_same_shape():
    check_image_shape(np.zeros((2, 8, 8, 3)), (8, 8, 3))


def test_check_image_shape_size_mismatch_names_both_and_fix():
    with pytest.raises(
        ValueError,
        match=r"X images are 32x32x3 but the estimator was fitted on 64x64x3 images of "
        r"the catalogue\. Put a Resize\(output_size=64\) or CenterCrop\(size=64\).*Reframe",
    ):
        check_image_shape(np.zeros((1, 32, 32, 3)), (64, 64, 3))


def test_check_image_shape_channel_mismatch():
    with pytest.raises(ValueError, match="1 channels but .* 3-channel images.*Convert them to RGB"):
        check_image_shape(np.zeros((1, 8, 8, 1)), (8, 8, 3))
    with pytest.raises(ValueError, match="Convert them to grey"):
        check_image_shape(np.zeros((1, 8, 8, 3)), (8, 8, 1))


def test_check_image_shape_custom_names():
    with pytest.raises(ValueError, match="query images are 8x8x3 .* of the training set"):
        check_image_shape(
            np.zeros((1, 8, 8, 3)), (4, 4, 3), name="query", fitted_on="the training set"
        )


# ------------------------------------------------------------------ check_labels
def test_check_labels_accepts_1d_and_column():
    np.testing.assert_array_equal(check_labels([0, 1, 1], 3), [0, 1, 1])
    np.testing.assert_array_equal(check_labels(np.array([[0], [2]]), 2), [0, 2])
    assert check_labels(["a", "b"], 2).tolist() == ["a", "b"]


def test_check_labels_errors():
    with pytest.raises(ValueError, match="y is None; this estimator needs labels"):
        check_labels(None, 3)
    with pytest.raises(
        ValueError, match=r"must be 1-D \(one label per image\); got shape \(2, 2\)"
    ):
        check_labels([[0, 1], [1, 0]], 2)
    with pytest.raises(ValueError, match="y has 2 labels but there are 3 images"):
        check_labels([0, 1], 3)
    with pytest.raises(ValueError, match="NaN or infinite labels"):
        check_labels([0.0, np.nan], 2)
    with pytest.raises(ValueError, match="target has 1 labels"):
        check_labels([0], 2, name="target")


# ------------------------------------------------------------------ audit siblings (issue 10)
def test_masked_array_is_refused_not_unmasked():
    X = np.ma.masked_array(np.full((1, 4, 4, 3), 0.5), mask=False)
    X.mask[0, 0, 0, 0] = True
    with pytest.raises(TypeError, match=r"masked array.*X\.filled\(0\)"):
        check_images(X)


@pytest.mark.parametrize(
    "c, what, fix", [(4, "RGBA", r"X\[\.\.\., :3\]"), (2, "grey and alpha", r"X\[\.\.\., :1\]")]
)
def test_one_image_with_alpha_is_not_read_as_grey_images(c, what, fix):
    with pytest.raises(
        ValueError,
        match=rf"shape \(8, 9, {c}\): one 8x9 image with {c} channels \({what}\?\).*{fix}",
    ):
        check_images(np.zeros((8, 9, c), np.uint8))
    # a batch is a batch: 8 grey images 9x{c} when single images are not accepted
    assert check_images(np.zeros((8, 9, c), np.uint8), allow_single=False).shape == (8, 9, c, 1)


def test_float64_beyond_float32_is_out_of_range_not_infinite():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from a cast either
        with pytest.raises(ValueError, match=r"outside \[0, 1\] \(48 of 48; min 1e\+300"):
            check_images(np.full((1, 4, 4, 3), 1e300))
    out = check_images(np.full((1, 4, 4, 3), 0.25))
    assert out.dtype == np.float32


def test_channels_first_image_gets_a_hint():
    with pytest.raises(
        ValueError, match=r"1 channels .*Convert them to RGB.*np\.moveaxis\(x, 0, -1\)"
    ):
        check_image_shape(check_images(np.zeros((3, 8, 8), np.uint8)), (8, 8, 3))
    with pytest.raises(ValueError, match=r"Resize\(output_size=16\).*np\.moveaxis"):
        check_image_shape(check_images(np.zeros((3, 8, 8), np.uint8)), (16, 16, 3))


@pytest.mark.parametrize("missing", [None, float("nan"), np.float32("nan")])
def test_check_labels_refuses_missing_labels_in_object_arrays(missing):
    with pytest.raises(ValueError, match=r"1 missing labels \(None or NaN, at index 1\)"):
        check_labels(np.array(["a", missing, "b"], dtype=object), 3)
    assert check_labels(np.array(["a", "b"], dtype=object), 2).tolist() == ["a", "b"]
