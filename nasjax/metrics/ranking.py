"""Rank agreement between two score vectors."""

from __future__ import annotations

import numpy as np


def kendall_tau(x, y) -> float:
    """Kendall's tau-b of x, y (n,) (any real dtype; compared as given, float64 at most, never
    rounded to a coarser type): a float in [-1, 1], ties handled as in tau-b (as scipy.stats.kendalltau).

    NaN when an input holds NaN, is constant, or has fewer than 2 entries. Host-side and exact: pair
    counts are Python integers (no overflow at any n); O(n log^2 n) time (Knight's method: sort by
    (x, y), then count the inversions of y by merging sorted blocks).
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"kendall_tau needs two vectors of the same length, got shapes {x.shape}, "
                         f"{y.shape}")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any():
        return float("nan")
    order = np.lexsort((y, x))  # by x, ties by y
    rx = np.unique(x, return_inverse=True)[1].ravel()[order]
    ry = np.unique(y, return_inverse=True)[1].ravel()[order]
    pairs = _tied_pairs(np.zeros_like(rx))
    ties_x, ties_y = _tied_pairs(rx), _tied_pairs(ry)
    ties_xy = _tied_pairs(rx * (int(ry.max()) + 1) + ry)
    discordant = _inversions(ry)
    denominator = (pairs - ties_x) * (pairs - ties_y)
    if denominator == 0:
        return float("nan")
    # Pairs tied in x are sorted by y, so every inversion of y is a discordant pair.
    return (pairs - ties_x - ties_y + ties_xy - 2 * discordant) / float(np.sqrt(float(denominator)))


def _tied_pairs(codes: np.ndarray) -> int:
    """Number of pairs with equal codes (int (n,)): sum over groups of t (t - 1) / 2, exact."""
    counts = np.unique(codes, return_counts=True)[1].astype(object)
    return int(np.sum(counts * (counts - 1) // 2))


def _inversions(ranks: np.ndarray) -> int:
    """Pairs i < j with ranks[i] > ranks[j] (ranks int in [0, n)), by bottom-up merging: at each
    width, each left block's sorted values are counted against its right neighbour's."""
    n = len(ranks)
    values = ranks.astype(np.int64)
    total, width = 0, 1
    while width < n:
        position = np.arange(n)
        pair = position // (2 * width)  # block pair index; values are sorted within blocks of width
        left = (position % (2 * width)) < width
        keys = pair * n + values  # sorted within each block, ordered across block pairs
        left_keys = keys[left]  # globally sorted: blocks in order, sorted inside
        # For each right element: left elements of its pair that are greater.
        above = np.searchsorted(left_keys, keys[~left], side="right")
        pair_end = np.searchsorted(left_keys, pair[~left] * n + n, side="left")
        total += int(np.sum(pair_end - above))
        values = np.sort(keys) - pair * n  # merge: each pair of blocks sorted
        width *= 2
    return total
