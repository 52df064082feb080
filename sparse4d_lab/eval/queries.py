"""Query utilisation (PaQ-DETR's measure): how evenly the anchor slots are used over an evaluation set.

A slot's activation is how often it is matched as a positive (by the training assignment) over the evaluation
set. A Gini coefficient near 1 means a few slots do all the work and most stay idle (PaQ-DETR reports 0.97 for
DETR, 0.89 with its pattern-sharing queries). The same measure on the slots whose detections survive
post-processing (score threshold, top-k, NMS) shows which queries actually produce output.

Gini = sum_i (2 i - n - 1) x_(i) / (n sum x) with x sorted ascending (the mean absolute difference over twice the
mean); it is 0 when every slot is used equally and (n - 1) / n when one slot takes everything. A set without any
activation has no inequality to measure and gives 0. The Lorenz curve joins (k / n, share of the activations of
the k least used slots) for k = 0..n.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .records import EvalInputError, as_numpy


def slot_activation(matched: Any, num_slots: int | None = None) -> np.ndarray:
    """Activation count per slot.

    `matched` is a boolean or 0/1 mask [..., num_slots] (e.g. [frames, queries]; torch tensors accepted), a flat
    array of matched slot indices, or a list of per-frame index arrays (then `num_slots` is required).
    """
    if isinstance(matched, (list, tuple)):
        parts = [as_numpy(m).reshape(-1) for m in matched]
        matched = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return _index_counts(matched.astype(np.int64), num_slots)
    arr = as_numpy(matched)
    if arr.dtype == bool or arr.ndim >= 2:
        if arr.ndim < 2 and arr.dtype == bool:
            arr = arr[None]
        counts = arr.reshape(-1, arr.shape[-1]).astype(np.int64).sum(axis=0)
        if num_slots is not None and num_slots != len(counts):
            raise EvalInputError(f"the mask has {len(counts)} slots but num_slots={num_slots}")
        return counts
    return _index_counts(arr.astype(np.int64).reshape(-1), num_slots)


def _index_counts(index: np.ndarray, num_slots: int | None) -> np.ndarray:
    if num_slots is None:
        raise EvalInputError("matched slot indices need num_slots (the number of anchor slots)")
    if index.size and (index.min() < 0 or index.max() >= num_slots):
        raise EvalInputError(f"slot index out of range 0..{num_slots - 1}")
    return np.bincount(index, minlength=num_slots)


def gini(values: Any) -> float:
    """Gini coefficient of non-negative values (0: all equal; 0 as well when they are all zero)."""
    x = np.sort(as_numpy(values, float).reshape(-1))
    if x.size == 0:
        raise EvalInputError("the Gini coefficient of an empty set is undefined")
    if x[0] < 0:
        raise EvalInputError("the Gini coefficient needs non-negative values")
    total = x.sum()
    if total == 0:
        return 0.0
    n = x.size
    rank = np.arange(1, n + 1)
    return float(np.sum((2 * rank - n - 1) * x) / (n * total))


def lorenz_curve(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Lorenz curve: (share of slots, share of activations of the least used ones), n + 1 points from (0, 0)."""
    x = np.sort(as_numpy(values, float).reshape(-1))
    total = x.sum()
    population = np.linspace(0.0, 1.0, x.size + 1)
    share = np.r_[0.0, np.cumsum(x) / total] if total > 0 else population.copy()
    return population, share


def utilisation_summary(counts: np.ndarray, num_frames: int | None = None, curve_points: int = 101) -> dict[str, Any]:
    """Gini, idle share, top-decile share and a resampled Lorenz curve of per-slot activation counts."""
    counts = np.asarray(counts)
    population, share = lorenz_curve(counts)
    grid = np.linspace(0.0, 1.0, curve_points)
    total = int(counts.sum())
    top = np.sort(counts)[::-1][: max(1, int(np.ceil(0.1 * counts.size)))]
    out: dict[str, Any] = {
        "num_slots": int(counts.size),
        "activations": total,
        "gini": gini(counts),
        "idle_share": float(np.mean(counts == 0)),
        "top10_share": float(top.sum() / total) if total else float("nan"),
        "lorenz": {"slots": grid.tolist(), "activations": np.interp(grid, population, share).tolist()},
        "counts": counts.tolist(),
    }
    if num_frames:
        out["num_frames"] = int(num_frames)
        out["mean_rate"] = float(total / (num_frames * counts.size))
    return out


def query_utilisation(
    matched: Any,
    num_slots: int | None = None,
    *,
    survived: Any = None,
    num_frames: int | None = None,
    curve_points: int = 101,
) -> dict[str, Any]:
    """PaQ's query utilisation of the matched slots (and of the surviving ones, when `survived` is given).

    `matched`/`survived` take the forms of `slot_activation`; with masks [frames, slots] the number of frames
    is read from them. Returns `{"matched": summary, "survived": summary}` (see `utilisation_summary`).
    """
    if num_frames is None:
        arr = matched if isinstance(matched, (list, tuple)) else as_numpy(matched)
        if isinstance(arr, (list, tuple)):
            num_frames = len(arr)
        elif arr.ndim >= 2:
            num_frames = int(np.prod(arr.shape[:-1]))
    out = {"matched": utilisation_summary(slot_activation(matched, num_slots), num_frames, curve_points)}
    if survived is not None:
        out["survived"] = utilisation_summary(slot_activation(survived, num_slots), num_frames, curve_points)
    return out
