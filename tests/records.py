"""Record builders shared by the evaluation tests: one box or track row in the JSON layout of the eval CLI, and
one frame as the job's collector records it."""

from __future__ import annotations

import numpy as np

SHAPE = {"z": 1.0, "w": 2.0, "l": 4.0, "h": 1.5, "yaw": 0.0, "vx": 0.0, "vy": 0.0}


def box(sample: str, x: float, y: float, cls: str = "car", score: float = -1.0, **extra: float) -> dict:
    """A detection (score >= 0) or ground-truth (score -1) box of a car-sized shape at (x, y)."""
    return {"sample": sample, "x": x, "y": y, **SHAPE, "cls": cls, "score": score, **extra}


def track(
    scene: str, t: int, ident: int, x: float, y: float = 0.0, cls: str = "car", score: float | None = None
) -> dict:
    """A tracked box of object (or hypothesis) ``ident`` at frame ``t``; a score only on hypotheses."""
    record = {"scene": scene, "t": t, "id": ident, "x": x, "y": y, **SHAPE, "z": 0.8, "w": 1.8, "cls": cls}
    if score is not None:
        record["score"] = score
    return record


def collector_frame(t: int, gt: np.ndarray, **fields: object) -> dict:
    """Frame ``t`` of scene s0 as the collector records it, with objects 10 (class 0) and 11 (class 1) at ``gt``;
    ``fields``: the model's side (boxes, scores, ids, query scores, slots) and the distractors."""
    return {
        "scene": "s0",
        "t": t,
        "sample": f"s0/{t:04d}",
        "gt_boxes": gt,
        "gt_labels": np.array([0, 1]),
        "gt_ids": np.array([10, 11]),
        **fields,
    }
