"""Band keys, union-find components and representative choice."""

from __future__ import annotations

import numpy as np

from factory.dedup.components import band_keys, components, representatives, size_histogram, union_find


def test_band_keys_equal_exactly_when_band_values_equal():
    sig = np.array([[1, 2, 3, 4], [1, 2, 9, 9], [5, 2, 3, 4]], dtype=np.uint32)
    keys = band_keys(sig, bands=2, rows=2)
    assert keys[0, 0] == keys[1, 0] and keys[0, 0] != keys[2, 0]
    assert keys[0, 1] == keys[2, 1] and keys[0, 1] != keys[1, 1]
    assert band_keys(np.array([[7, 7]], np.uint32), 2, 1)[0, 0] != band_keys(np.array([[7, 7]], np.uint32), 2, 1)[0, 1]


def test_union_find_links_a_long_chain_into_one_component():
    n = 1000
    u = np.arange(n - 1)[::-1].copy()
    labels = union_find(n, u, u + 1)
    assert (labels == 0).all()


def test_components_join_rows_sharing_any_band():
    keys = np.array([[1, 10], [2, 10], [2, 20], [3, 30]], dtype=np.uint64)
    labels = components(keys)
    assert labels[0] == labels[1] == labels[2] != labels[3]


def test_representative_is_first_under_order_keys():
    labels = np.array([0, 0, 0, 3])
    reward_desc = -np.array([0.5, 0.9, 0.9, 0.1])
    length = np.array([10, 30, 20, 5])
    keep = representatives(labels, [reward_desc, length, np.arange(4)])
    assert keep.tolist() == [False, False, True, True]


def test_size_histogram_buckets_components_of_two_or_more():
    labels = np.array([0, 0, 2, 2, 2, 5, 6, 6, 6, 6, 6])
    assert size_histogram(labels) == {"2": 1, "3-4": 1, "5-8": 1}
