"""Integer codes of keys, the grouping step every evaluator starts with: factorise labels, number keys densely
or by first appearance, combine several keys into one, order rows by keys and cut sorted keys into runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def factorize(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the values and the sorted distinct values.

    Keys such as class names take a handful of values: when a sample of the array suggests so, one vectorised
    comparison per candidate value is much cheaper than sorting or hashing a million strings.
    """
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, np.int64), values
    if values.size > 4096:
        candidates = np.unique(values[:: max(1, values.size // 2048)])
        if len(candidates) <= 16:
            codes = np.full(values.size, -1, np.int64)
            for k, value in enumerate(candidates):
                codes[values == value] = k
            if codes.min() >= 0:
                return codes, candidates
    import pandas as pd

    codes, uniques = pd.factorize(values, sort=True)
    return codes.astype(np.int64), np.asarray(uniques, dtype=values.dtype)


def positions_in(codes: np.ndarray, uniq: np.ndarray, vocabulary: Sequence[Any]) -> np.ndarray:
    """Factorised values (``codes`` into ``uniq``) as positions in ``vocabulary``, -1 where a value is not in it:
    one dictionary lookup per distinct value, not per row."""
    index = {v: k for k, v in enumerate(vocabulary)}
    lut = np.array([index.get(u, -1) for u in uniq.tolist()], np.int64)
    return lut[codes] if len(codes) else codes


def dense_rank(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Rank of every non-negative integer key among the distinct keys (sorted), and their number; a table
    lookup when the key range is small, `np.unique` otherwise."""
    keys = np.asarray(keys, np.int64)
    if keys.size == 0:
        return keys, 0
    top = int(keys.max()) + 1
    if top <= 8 * keys.size + 4096:
        present = np.zeros(top, bool)
        present[keys] = True
        rank = np.cumsum(present) - 1
        return rank[keys], int(rank[-1]) + 1
    uniq, inverse = np.unique(keys, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), len(uniq)


def codes_by_first_appearance(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes numbered in order of first appearance, and the distinct values in that order.

    The devkits keep their containers in insertion order; numbering by first appearance keeps that order.
    """
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(0, np.int64), values[:0]
    uniq, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank[inverse.reshape(-1)], uniq[order]


def dense_codes(*keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense integer codes (sorted order) of the rows of several equally long integer key arrays."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, np.int64), 0
    stacked = np.stack([np.asarray(k, np.int64) for k in keys], axis=1)
    _, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse.astype(np.int64), int(inverse.max()) + 1


def combine_keys(*keys: np.ndarray) -> np.ndarray:
    """One int64 key per row preserving the lexicographic order of (keys[0], keys[1], ...) (non-negative keys)."""
    out = np.zeros(len(keys[0]), np.int64)
    for k in keys:
        k = np.asarray(k, np.int64)
        span = int(k.max()) + 1 if k.size else 1
        limit = np.iinfo(np.int64).max // max(span, 1)
        if out.size and int(out.max()) >= limit:
            return dense_codes(*keys)[0]
        out = out * span + k
    return out


def int_order(*keys: np.ndarray) -> np.ndarray:
    """Stable order of rows by non-negative integer keys, the first key most significant (like `np.lexsort` with
    the keys reversed), through one combined key when it fits in int64: one sort instead of one per key."""
    combined = np.zeros(len(keys[0]), np.int64)
    for k in keys:
        k = np.asarray(k, np.int64)
        span = int(k.max()) + 1 if k.size else 1
        if combined.size and int(combined.max()) >= np.iinfo(np.int64).max // span:
            return np.lexsort(keys[::-1])
        combined = combined * span + k
    return np.argsort(combined, kind="stable")


def segment_bounds(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each run of equal values in a sorted array."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cut = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    return np.r_[0, cut], np.r_[cut, n]


def rank_within_groups(group: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Position of every row inside its group when the rows are visited in `order` (a permutation)."""
    rank = np.empty(len(group), np.int64)
    if len(group) == 0:
        return rank
    g = group[order]
    sorter = np.argsort(g, kind="stable")
    gs = g[sorter]
    starts, ends = segment_bounds(gs)
    pos = np.arange(len(gs)) - np.repeat(starts, ends - starts)
    rank[order[sorter]] = pos
    return rank


def first_duplicate(*codes: np.ndarray) -> tuple[int, int] | None:
    """Record indices of the first two rows sharing all integer codes, or None."""
    n = len(codes[0])
    if n < 2:
        return None
    key = combine_keys(*codes)
    ordered = np.sort(key)
    if not np.any(ordered[1:] == ordered[:-1]):
        return None
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    if same.size == 0:
        return None
    return int(order[same[0]]), int(order[same[0] + 1])
