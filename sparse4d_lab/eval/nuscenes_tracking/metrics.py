"""The devkit's figures: score thresholds from recall levels (`TrackingEvaluation.compute_thresholds`), the
per-threshold figures from event counts (`metrics.py` and py-motmetrics), the best-MOTA pick with AMOTA/AMOTP,
and the summary over classes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .loaders import SceneBoxes

METRIC_ORDER = (
    "amota",
    "amotp",
    "recall",
    "motar",
    "gt",
    "mota",
    "motp",
    "mt",
    "ml",
    "faf",
    "tp",
    "fp",
    "fn",
    "ids",
    "frag",
    "tid",
    "lgd",
)
SUMMED_OVER_CLASSES = ("mt", "ml", "tp", "fp", "fn", "ids", "frag")
LEGACY = ("recall", "motar", "gt", "mota", "motp", "mt", "ml", "faf", "tp", "fp", "fn", "ids", "frag", "tid", "lgd")
DEFAULT_WORST = {
    "amota": 0.0,
    "amotp": 2.0,
    "recall": 0.0,
    "motar": 0.0,
    "mota": 0.0,
    "motp": 2.0,
    "mt": 0.0,
    "ml": -1.0,
    "faf": 500.0,
    "gt": -1.0,
    "tp": 0.0,
    "fp": -1.0,
    "fn": -1.0,
    "ids": -1.0,
    "frag": -1.0,
    "tid": 20.0,
    "lgd": 20.0,
}


@dataclass(frozen=True)
class TrackingConfig:
    """Settings of the nuScenes tracking evaluation (defaults: the devkit's `tracking_nips_2019`)."""

    classes: tuple[Any, ...] | None = None  # None: every class in the ground truth or predictions (sorted)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    num_thresholds: int = 40
    metric_worst: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_WORST))


def compute_thresholds(
    match_scores: np.ndarray, gt_box_count: int, min_recall: float, num_thresholds: int
) -> list[float]:
    """Score thresholds for `num_thresholds` recall levels, highest recall first; NaN where not reached."""
    if len(match_scores) == 0:
        return [float("nan")] * num_thresholds
    scores = np.sort(np.asarray(match_scores, float))[::-1]
    rec = np.array(range(1, len(scores) + 1)) / gt_box_count
    max_recall_achieved = np.max(rec)
    rec_interp = np.linspace(min_recall, 1, num_thresholds).round(12)
    thresholds = np.interp(rec_interp, rec, scores, right=0)
    thresholds[rec_interp > max_recall_achieved] = np.nan
    thresholds = list(thresholds.tolist())
    thresholds.reverse()
    return thresholds


def motar(
    num_matches: float,
    num_misses: float,
    num_switches: float,
    num_false_positives: float,
    num_objects: float,
    alpha: float = 1.0,
) -> float:
    """MOTA relative to the recall reached: max(0, 1 - FP / matches) up to rounding; NaN without matches."""
    recall = num_matches / num_objects
    nominator = (num_misses + num_switches + num_false_positives) - (1 - recall) * num_objects
    denominator = recall * num_objects
    if denominator == 0:
        return float("nan")
    return float(np.maximum(0, 1 - alpha * nominator / denominator))


def threshold_metrics(c: Mapping[str, float]) -> dict[str, float]:
    """The devkit's per-threshold figures from summed counts (`c`: gt, tp, ids, fn, fp, dsum, mt, ml, frag,
    num_frames, tid_sum, lgd_sum, tracked_objects)."""
    gt, tp, ids, fn, fp = c["gt"], c["tp"], c["ids"], c["fn"], c["fp"]
    det = tp + ids
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "recall": float(np.divide(det, gt)),
            "motar": motar(tp, fn, ids, fp, gt),
            "gt": float(gt),
            "mota": float(np.maximum(0, 1.0 - (fn + ids + fp) / gt)),
            "motp": float("nan") if det == 0 else float(c["dsum"] / det),
            "mt": float(c["mt"]),
            "ml": float(c["ml"]),
            "faf": float(fp / c["num_frames"] * 100),
            "tp": float(tp),
            "fp": float(fp),
            "fn": float(fn),
            "ids": float(ids),
            "frag": float(c["frag"]),
            "tid": float("nan") if c["tracked_objects"] == 0 else float(c["tid_sum"] / c["tracked_objects"]),
            "lgd": float("nan") if c["tracked_objects"] == 0 else float(c["lgd_sum"] / c["tracked_objects"]),
        }


STAT_NAMES = ("gt", "tp", "ids", "fn", "fp", "dsum", "mt", "ml", "frag", "tid_sum", "lgd_sum", "tracked_objects")


def overall(per_class: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Class summary of the devkit: sums for counts, means for the rest, classes without ground truth ignored."""
    overall = {}
    for m in METRIC_ORDER:
        data = np.array(list(per_class[m].values()), float)
        if data.size == 0 or np.all(np.isnan(data)):
            overall[m] = float("nan")
        elif m in SUMMED_OVER_CLASSES:
            overall[m] = float(np.nansum(data))
        else:
            overall[m] = float(np.nanmean(data))
    return overall


def summarize_class(
    per_class: dict[str, dict[str, float]],
    key: str,
    thresholds: list[float],
    values: Mapping[float, Mapping[str, float]],
    config: TrackingConfig,
    gt_tracks: SceneBoxes,
    c: int,
) -> None:
    """Expand per-threshold figures to the recall levels, then pick the best MOTA and average AMOTA/AMOTP."""
    worst = dict(config.metric_worst)
    series: dict[str, np.ndarray] = {}
    if not values:
        gt_c = gt_tracks.label == c
        special = {
            "ml": float(len(np.unique(gt_tracks.track_id[gt_c]))),
            "gt": float(gt_c.sum()),
            "fn": float(gt_c.sum()),
            "fp": float("nan"),
            "ids": float("nan"),
            "frag": float("nan"),
        }
        for m in LEGACY:
            w = worst[m]
            series[m] = np.full(len(thresholds), special[m] if w == -1 else w)
    else:
        for m in LEGACY:
            series[m] = np.array([float("nan") if np.isnan(t) else values[t][m] for t in thresholds])
    best = None if np.all(np.isnan(series["mota"])) else int(np.nanargmax(series["mota"]))
    for m in LEGACY:
        per_class[m][key] = float("nan") if best is None else float(series[m][best])
    for m, src in (("amota", "motar"), ("amotp", "motp")):
        vals = series[src].copy()
        if np.all(np.isnan(vals)):
            per_class[m][key] = float("nan")
        else:
            vals[np.isnan(vals)] = worst[m]
            per_class[m][key] = float(np.nanmean(vals))
