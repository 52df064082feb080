"""Record builders shared by the evaluation tests: one box or track row in the JSON layout of the eval CLI."""

from __future__ import annotations

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
