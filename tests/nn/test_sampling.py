"""The class-balanced sampler of the CNN's training iterator."""

import numpy as np
import pytest
import torch

from galaxysim.nn._augment import balanced_order


@pytest.mark.parametrize("counts", [[50, 7, 13], [10, 10, 10], [1, 99], [4, 4, 3]])
def test_equal_shares_and_even_repeats(counts):
    y = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(0)
    y = y[rng.permutation(len(y))]  # classes interleaved, as in a catalogue
    with torch.random.fork_rng():
        torch.manual_seed(0)
        order = balanced_order(y)
    assert len(order) == len(y)
    shares = np.bincount(y[order], minlength=len(counts))
    assert shares.max() - shares.min() <= 1  # equal up to the remainder
    for c, n_c in enumerate(counts):
        uses = np.bincount(order, minlength=len(y))[y == c]
        assert uses.max() - uses.min() <= 1  # a class's images used equally often
        # a class with at least its share is drawn without repeats
        if n_c >= len(y) // len(counts) + 1:
            assert uses.max() <= 1


def test_balanced_catalogue_is_a_permutation():
    y = np.tile(np.arange(10), 50)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        order = balanced_order(y)
    np.testing.assert_array_equal(np.sort(order), np.arange(len(y)))
    assert not np.array_equal(order, np.arange(len(y)))  # shuffled


def test_seeded_by_torch_and_different_each_epoch():
    y = np.repeat([0, 1, 2], [30, 5, 15])
    with torch.random.fork_rng():
        torch.manual_seed(3)
        a, b = balanced_order(y), balanced_order(y)
        torch.manual_seed(3)
        c = balanced_order(y)
    np.testing.assert_array_equal(a, c)
    assert not np.array_equal(a, b)


def test_any_label_values():
    y = np.array(["spiral", "merger", "spiral", "spiral", "edge-on", "spiral"])
    order = balanced_order(y)
    assert sorted(np.unique(y[order], return_counts=True)[1].tolist()) == [2, 2, 2]
