"""False positives: how many confident detections match nothing, where they are, and how queries score.

The project's question is whether unmatched queries get a negative training signal; without one, scores of
unmatched queries inflate and confident false positives flood the output. This module measures that:

* false positives per frame and in total at several score thresholds, class aware (a detection must match a
  ground truth of its class) and class agnostic (any class), with the nuScenes matching rule: detections by
  descending score take the nearest untaken ground truth closer than `match_distance` (2 m) on the floor plane.
  Greedy matching in score order means that the detections above a threshold are matched exactly as if the
  lower ones did not exist, so one matching serves every threshold and the whole curve;
* high-confidence false positives per frame: score >= 0.5, and when the detections' class scores are given, class
  score >= 0.5. Sparse4D's output score is class score x sigmoid(centerness), but its decoders (upstream and TAO)
  apply TopK and the score threshold to the class score alone, and the instance bank gives track ids by it: a
  false positive with a high class score is the confident detection that no threshold removes and that floods the
  tracker, even while a low centerness keeps its output score under 0.5;
* false positives near a distractor versus in free space, when the distractor boxes of each frame are known.
  Rule: a false positive is "near" when its centre lies within `near_distance` (default 1 m) of a distractor's
  footprint on the floor plane (the rectangle of length l and width w around the centre, rotated by yaw;
  inside counts as distance 0). Being within that distance of the centre implies it, so the rule covers both;
* the score distribution of all unmatched queries next to matched ones (`query_score_distribution`), computed
  from raw per-query scores and a matched mask because it is about the model's queries, not post-processed
  detections;
* per class: false positives per frame by predicted class (`by_class`), and each class column's score over the
  unmatched queries (`unmatched_class_scores`). A loss that drops one class's negative signal inflates that
  class alone, which every pooled figure dilutes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._codes import factorize, positions_in
from ._ops import neighbour_pairs
from .detection import devkit_order, match_greedy
from .records import Detections, EvalInputError, as_detections, as_numpy, class_codes, shared_codes

DEFAULT_THRESHOLDS = (0.05, 0.3, 0.5)


def match_detections(
    gt: Detections, pred: Detections, match_distance: float = 2.0, class_aware: bool = True
) -> np.ndarray:
    """Ground-truth row matched by each prediction (-1: false positive) under the nuScenes greedy rule."""
    _, gt_cls, pred_cls = class_codes(gt.label, pred.label, None)
    gt_sample, pred_sample = shared_codes(gt.sample, pred.sample, "sample")
    n_cls = int(max(gt_cls.max(initial=0), pred_cls.max(initial=0))) + 1
    gt_group = gt_sample * n_cls + gt_cls if class_aware else gt_sample
    pred_group = pred_sample * n_cls + pred_cls if class_aware else pred_sample
    order = devkit_order(pred.score, pred_sample)
    match, _ = match_greedy(gt_group, gt.xy, pred_group, pred.xy, order, [match_distance])
    return match[0]


def frame_index(gt: Detections, pred: Detections, samples: Sequence[Any] | None = None) -> tuple[list[Any], np.ndarray]:
    """The evaluated frames (given, or every sample of the ground truth or predictions) and each prediction's."""
    if samples is None:
        samples = sorted(set(np.asarray(gt.sample).tolist()) | set(np.asarray(pred.sample).tolist()))
    samples = list(samples)
    frame = positions_in(*factorize(pred.sample), samples)
    if (frame < 0).any():
        i = int(np.flatnonzero(frame < 0)[0])
        raise EvalInputError(
            f"prediction record {i} is in sample {pred.sample[i].item()!r}, which is not in the "
            "given list of samples; add it or drop the record"
        )
    return samples, frame


def near_distractor(pred: Detections, distractors: Mapping[Any, Any], near_distance: float = 1.0) -> np.ndarray:
    """Per prediction: is its centre within `near_distance` of the footprint of a distractor of its sample?

    `distractors` maps a sample to an array [K, 10] of boxes `[x, y, z, l, w, h, yaw, vx, vy, vz]`.
    """
    keys, boxes = [], []
    for sample, arr in distractors.items():
        arr = as_numpy(arr, float).reshape(-1, 10) if np.size(as_numpy(arr)) else np.zeros((0, 10))
        if not np.all(np.isfinite(arr)):
            raise EvalInputError(f"distractor boxes of sample {sample!r} hold NaN or infinite values")
        keys += [sample] * len(arr)
        boxes.append(arr)
    near = np.zeros(len(pred), bool)
    if not keys or len(pred) == 0:
        return near
    box = np.concatenate(boxes)
    box_sample, pred_sample = shared_codes(np.asarray(keys), pred.sample, "sample")
    reach = near_distance + float(np.max(np.hypot(box[:, 3], box[:, 4]))) / 2
    i_box, i_pred, _ = neighbour_pairs(box_sample, box[:, :2], pred_sample, pred.xy, reach)
    rel = pred.xy[i_pred] - box[i_box, :2]
    cos, sin = np.cos(box[i_box, 6]), np.sin(box[i_box, 6])
    along = np.abs(cos * rel[:, 0] + sin * rel[:, 1]) - box[i_box, 3] / 2
    across = np.abs(-sin * rel[:, 0] + cos * rel[:, 1]) - box[i_box, 4] / 2
    outside = np.hypot(np.maximum(along, 0), np.maximum(across, 0))
    near[i_pred[outside <= near_distance]] = True
    return near


def _counts_summary(fp_per_frame: np.ndarray) -> dict[str, float]:
    n = len(fp_per_frame)
    return {
        "total": int(fp_per_frame.sum()),
        "per_frame": float(fp_per_frame.mean()) if n else float("nan"),
        "max_per_frame": int(fp_per_frame.max()) if n else 0,
        "frames_with_fp": int(np.count_nonzero(fp_per_frame)),
    }


def false_positive_report(
    gt: Detections | Sequence[Mapping[str, Any]],
    pred: Detections | Sequence[Mapping[str, Any]],
    *,
    score_thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    match_distance: float = 2.0,
    high_confidence: float = 0.5,
    distractors: Mapping[Any, Any] | None = None,
    near_distance: float = 1.0,
    curve_thresholds: Sequence[float] | None = None,
    samples: Sequence[Any] | None = None,
    class_scores: Any = None,
    classes: Sequence[str] | None = None,
) -> dict[str, Any]:
    """False positives of `pred` against `gt` (records or `Detections`), per frame and in total.

    Returns a JSON-ready dict: `class_aware` and `class_agnostic` blocks keyed by score threshold ("0.05", ...)
    with total, per_frame (mean), max_per_frame and frames_with_fp; `high_confidence` (class aware, score >=
    `high_confidence`); `high_confidence_class` (only with `class_scores`, one per prediction: the same count on
    the class score); `near_distractor` (only with `distractors`: near / free counts and the near share per
    threshold); `curve` (false positives per frame against the score threshold, both matchings).
    `samples` lists every frame (frames without any box count with zero false positives). `by_class`: the
    false positives per frame of each predicted class (every class of `classes`, else each predicted one).
    """
    gt = as_detections(gt, "ground truth", gt=True)
    pred = as_detections(pred, "prediction", gt=False)
    frames, pred_frame = frame_index(gt, pred, samples)
    n_frames = len(frames)
    unmatched = {
        "class_aware": match_detections(gt, pred, match_distance, class_aware=True) < 0,
        "class_agnostic": match_detections(gt, pred, match_distance, class_aware=False) < 0,
    }

    def per_frame(mask: np.ndarray) -> np.ndarray:
        return np.bincount(pred_frame[mask], minlength=n_frames)

    report: dict[str, Any] = {"num_frames": n_frames, "match_distance": match_distance}
    for name, fp in unmatched.items():
        report[name] = {str(float(t)): _counts_summary(per_frame(fp & (pred.score >= t))) for t in score_thresholds}
    confidence = {"high_confidence": pred.score}
    if class_scores is not None:
        class_scores = as_numpy(class_scores, float).reshape(-1)
        if class_scores.shape != pred.score.shape:
            raise EvalInputError(
                f"class_scores has {class_scores.size} values for {pred.score.size} predictions: "
                "give one per prediction"
            )
        confidence["high_confidence_class"] = class_scores
    for name, score in confidence.items():
        confident = unmatched["class_aware"] & (score >= high_confidence)
        report[name] = {"score_threshold": high_confidence, **_counts_summary(per_frame(confident))}
    if distractors is not None:
        near = near_distractor(pred, distractors, near_distance)
        block: dict[str, Any] = {"near_distance": near_distance}
        for t in score_thresholds:
            fp = unmatched["class_aware"] & (pred.score >= t)
            n_near, n_free = int(np.sum(fp & near)), int(np.sum(fp & ~near))
            block[str(float(t))] = {
                "near": n_near,
                "free": n_free,
                "near_share": n_near / (n_near + n_free) if n_near + n_free else float("nan"),
            }
        report["near_distractor"] = block
    names = sorted(set(pred.label.tolist()), key=str) if classes is None else list(classes)
    report["by_class"] = _by_class(names, pred.label, unmatched["class_aware"], confidence, high_confidence, per_frame)
    curve = np.linspace(0, 1, 21).round(12) if curve_thresholds is None else np.asarray(curve_thresholds, float)
    report["curve"] = {"score_thresholds": curve.tolist()}
    for name, fp in unmatched.items():
        scores = np.sort(pred.score[fp])
        above = len(scores) - np.searchsorted(scores, curve, "left")
        key = "fp_per_frame" if name == "class_aware" else "fp_per_frame_class_agnostic"
        report["curve"][key] = (above / max(n_frames, 1)).tolist()
    return report


def _by_class(
    names: Sequence[Any],
    label: np.ndarray,
    fp: np.ndarray,
    confidence: Mapping[str, np.ndarray],
    high_confidence: float,
    per_frame: Any,
) -> dict[str, dict[str, float]]:
    """False positives per frame by predicted class: every one the decoder kept (``per_frame``) and the confident
    ones (``high_confidence`` on the output score, ``high_confidence_class`` on the class score). A loss that drops
    one class's negative signal floods that class alone, which the pooled counts dilute."""
    out = {}
    for name in names:
        mine = fp & (label == name)
        block = {"per_frame": _mean(per_frame(mine))}
        for key, score in confidence.items():
            block[f"{key}_per_frame"] = _mean(per_frame(mine & (score >= high_confidence)))
        out[str(name)] = block
    return out


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else math.nan


def unmatched_class_scores(
    class_scores: Any, matched: Any, classes: Sequence[str], quantiles: Sequence[float] = (0.9, 0.99)
) -> dict[str, dict[str, float]]:
    """Each class column's score over the unmatched queries (``class_scores [N, C]``, one row per query): the
    mean and upper quantiles. The max over classes hides which class lost its negative supervision; its own
    column shows it drifting up on background queries."""
    scores = as_numpy(class_scores, float).reshape(-1, len(classes))
    unmatched = ~as_numpy(matched).astype(bool).reshape(-1)
    if len(unmatched) != len(scores):
        raise EvalInputError(f"class scores ({len(scores)} queries) and matched mask ({len(unmatched)}) differ")
    s = scores[unmatched]
    out = {}
    for c, name in enumerate(classes):
        block = {"count": len(s), "mean": _mean(s[:, c])}
        for q in quantiles:
            block[f"q{round(100 * q):d}"] = float(np.quantile(s[:, c], q)) if len(s) else math.nan
        out[str(name)] = block
    return out


def query_score_distribution(
    scores: Any,
    matched: Any,
    *,
    quantiles: Sequence[float] = (0.5, 0.9, 0.99),
    share_above: float = 0.3,
) -> dict[str, dict[str, float]]:
    """Scores of matched versus unmatched queries (any shape, e.g. [batch, queries]; torch tensors accepted).

    Per group: count, mean, the quantiles (keys "q50", "q90", "q99") and the share of scores above
    `share_above` (key "share_above_0.3"). An empty group reports count 0 and NaNs.
    """
    scores = as_numpy(scores, float).reshape(-1)
    matched = as_numpy(matched).astype(bool).reshape(-1)
    if scores.shape != matched.shape:
        raise EvalInputError(f"scores ({scores.size}) and matched mask ({matched.size}) differ in size")
    out = {}
    for name, sel in (("unmatched", ~matched), ("matched", matched)):
        s = scores[sel]
        block: dict[str, float] = {"count": int(s.size), "mean": float(s.mean()) if s.size else float("nan")}
        for q in quantiles:
            block[f"q{round(100 * q):d}"] = float(np.quantile(s, q)) if s.size else float("nan")
        block[f"share_above_{share_above:g}"] = float(np.mean(s > share_above)) if s.size else float("nan")
        out[name] = block
    return out
