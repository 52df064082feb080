"""nuScenes detection metrics: AP per class and distance threshold, mAP, the TP errors and NDS.

Reproduces nuscenes-devkit 1.2.0 (`detection/algo.py`, `DetectionMetrics`) number for number, without its
Python loops over boxes:

* matching: per class, predictions are visited by descending score, ties broken by the later prediction first
  (the devkit sorts `(score, index)` pairs and reverses them; the index counts predictions grouped by sample in
  order of first appearance, then in record order). Each takes the nearest untaken ground truth of its class in
  its sample if the centre distance on the floor plane is strictly below the threshold; the first ground truth
  wins a distance tie. Only the order inside a sample matters, so all samples are matched at once, one rank at a
  time;
* precision/recall resampled at 101 recall points with `np.interp(..., right=0)` and no monotone envelope;
  AP = mean over the points above `min_recall` of `max(p - min_precision, 0) / (1 - min_precision)`;
* TP errors from the matches at `dist_th_tp`, cumulative means resampled on the confidence axis and averaged
  from just above `min_recall` to the maximum recall reached; a class without matches scores 1;
* a class without ground truth scores AP 0 and TP errors 1 (the devkit's `no_predictions`), which lowers mAP;
* no attributes: `attr_err` is 1 for every class and adds 0 to NDS, as in the reference;
* class-specific devkit rules kept: `traffic_cone` has no orientation/velocity/attribute error, `barrier` no
  velocity/attribute error and an orientation period of pi (configurable, they only apply to those names);
* headings are compared as given (`yaw`); the devkit's detour through quaternions changes them by ~1e-16.

The dataset-specific filters of the devkit (class ranges around the ego vehicle, boxes without lidar points,
bike racks) are not applied: every box given is evaluated. Samples only in the predictions count as samples
without ground truth (all their boxes are false positives); the devkit would refuse such input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._codes import codes_by_first_appearance, rank_within_groups, segment_bounds
from ._ops import neighbour_pairs, planar_distance
from .records import Detections, EvalInputError, as_detections, class_codes, shared_codes

TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")
N_RECALL = 101  # DetectionMetricData.nelem


@dataclass(frozen=True)
class DetectionConfig:
    """Settings of the nuScenes detection evaluation (defaults: the devkit's `detection_cvpr_2019`)."""

    classes: tuple[Any, ...] | None = None  # None: every class in the ground truth or the predictions (sorted)
    dist_ths: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    dist_th_tp: float = 2.0
    min_recall: float = 0.1
    min_precision: float = 0.1
    mean_ap_weight: float = 5.0
    undefined_tp_metrics: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("traffic_cone", ("attr_err", "vel_err", "orient_err")),
        ("barrier", ("attr_err", "vel_err")),
    )
    half_turn_classes: tuple[str, ...] = ("barrier",)  # orientation only known up to 180 degrees

    def __post_init__(self) -> None:
        if self.dist_th_tp not in self.dist_ths:
            raise EvalInputError(f"dist_th_tp={self.dist_th_tp} must be one of dist_ths={self.dist_ths}")
        if not 0 <= self.min_precision < 1 or not 0 <= self.min_recall <= 1:
            raise EvalInputError("min_precision must lie in [0, 1) and min_recall in [0, 1]")


@dataclass(frozen=True)
class MetricData:
    """Precision, confidence and TP-error curves of one class at one threshold, on 101 recall points.

    The TP-error curves are only computed at `dist_th_tp`, the only threshold the metrics read them at; at the
    other thresholds they read 1 (the devkit's value for an undefined error)."""

    recall: np.ndarray
    precision: np.ndarray
    confidence: np.ndarray
    trans_err: np.ndarray
    vel_err: np.ndarray
    scale_err: np.ndarray
    orient_err: np.ndarray
    attr_err: np.ndarray

    @classmethod
    def no_predictions(cls) -> MetricData:
        """The curves of a class without ground truth or without a single match."""
        ones = np.ones(N_RECALL)
        return cls(np.linspace(0, 1, N_RECALL), np.zeros(N_RECALL), np.zeros(N_RECALL), ones, ones, ones, ones, ones)

    @property
    def max_recall_ind(self) -> int:
        """Index of the highest recall reached: the last non-zero confidence."""
        non_zero = np.nonzero(self.confidence)[0]
        return int(non_zero[-1]) if len(non_zero) else 0

    @property
    def max_recall(self) -> float:
        return float(self.recall[self.max_recall_ind])


# ----------------------------------------------------------------------------------------------------------------
# Algorithm steps
# ----------------------------------------------------------------------------------------------------------------


def devkit_order(score: np.ndarray, sample_code: np.ndarray) -> np.ndarray:
    """Visiting order of the predictions: score descending, ties broken by the later prediction first.

    "Later" is the devkit's index into `EvalBoxes.all`: predictions grouped by sample (samples in order of first
    appearance), record order inside a sample. `sample_code` holds a non-negative integer code of the sample.
    """
    n = len(score)
    runs = 1 + int(np.count_nonzero(sample_code[1:] != sample_code[:-1])) if n else 0
    distinct = int(np.count_nonzero(np.bincount(sample_code))) if n else 0
    if runs == distinct:  # already grouped by sample: the position is the record index
        return n - 1 - np.argsort(-score[::-1], kind="stable")
    first_seen, _ = codes_by_first_appearance(sample_code)
    latest_first = np.argsort(first_seen, kind="stable")[::-1]  # devkit position, descending
    return latest_first[np.argsort(-score[latest_first], kind="stable")]


def match_greedy(
    gt_group: np.ndarray,
    gt_xy: np.ndarray,
    pred_group: np.ndarray,
    pred_xy: np.ndarray,
    order: np.ndarray,
    dist_ths: Sequence[float],
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching of the devkit for several distance thresholds at once.

    Groups are the independent matching pools (sample and class, or sample only for class-agnostic matching);
    `order` is the visiting order of the predictions. Returns `match [T, n_pred]` (index of the matched ground
    truth or -1) and `dist [T, n_pred]` (its centre distance, NaN if unmatched).

    A prediction whose candidates (ground truth closer than the largest threshold) are nobody else's candidates
    takes its nearest one whatever the order; only the others are replayed rank by rank.
    """
    ths = np.asarray(dist_ths, float)
    n_gt, n_pred = len(gt_group), len(pred_group)
    match = np.full((len(ths), n_pred), -1, np.int64)
    dist = np.full((len(ths), n_pred), np.nan)
    if n_gt == 0 or n_pred == 0:
        return match, dist
    ig, ip, d = neighbour_pairs(gt_group, gt_xy, pred_group, pred_xy, float(ths.max()))
    near = d < ths.max()
    ig, ip, d = ig[near], ip[near], d[near]
    shared = np.zeros(n_pred, bool)
    shared[ip[np.bincount(ig, minlength=n_gt)[ig] > 1]] = True

    # Alone: nearest candidate (the earlier ground truth on a distance tie), matched where below the threshold.
    alone = np.flatnonzero(~shared[ip])
    by_pred = alone[np.argsort(ip[alone], kind="stable")]
    starts, ends = segment_bounds(ip[by_pred])
    if starts.size:
        d_min = np.minimum.reduceat(d[by_pred], starts)
        at_min = d[by_pred] == np.repeat(d_min, ends - starts)
        g_min = np.minimum.reduceat(np.where(at_min, ig[by_pred], n_gt), starts)
        p = ip[by_pred[starts]]
        hit = d_min[None, :] < ths[:, None]
        for k in range(len(ths)):
            match[k, p[hit[k]]] = g_min[hit[k]]
            dist[k, p[hit[k]]] = d_min[hit[k]]

    # Shared: rank by rank; one prediction per group and rank, so no conflicts inside a step.
    rest = np.flatnonzero(shared[ip])
    if rest.size == 0:
        return match, dist
    ig, ip, d = ig[rest], ip[rest], d[rest]
    by_pred = np.lexsort((ig, d, ip))  # candidates of one prediction: nearest first, earlier gt first on a tie
    ig, ip, d = ig[by_pred], ip[by_pred], d[by_pred]
    ti, pi = np.nonzero(d[None, :] < ths[:, None])  # strict threshold, threshold-major order
    ig, ip, d = ig[pi], ip[pi], d[pi]
    # Rank among the shared predictions of the group only: the others never compete with them.
    shared_order = order[shared[order]]
    rank = np.zeros(n_pred, np.int64)
    rank[shared_order] = rank_within_groups(np.asarray(pred_group)[shared_order], np.arange(len(shared_order)))
    step = rank[ip]
    by_step = np.argsort(step, kind="stable")
    ti, ig, ip, d, step = ti[by_step], ig[by_step], ip[by_step], d[by_step], step[by_step]
    taken = np.zeros(len(ths) * n_gt, bool)
    starts, ends = segment_bounds(step)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        thr, gt, pred, gap = ti[start:end], ig[start:end], ip[start:end], d[start:end]  # this rank's candidates
        free = ~taken[thr * n_gt + gt]
        thr, gt, pred, gap = thr[free], gt[free], pred[free], gap[free]
        if len(thr) == 0:
            continue
        key = thr * n_pred + pred
        first = np.r_[True, key[1:] != key[:-1]]  # each prediction's nearest free ground truth, per threshold
        taken[thr[first] * n_gt + gt[first]] = True
        match[thr[first], pred[first]] = gt[first]
        dist[thr[first], pred[first]] = gap[first]
    return match, dist


def cummean(x: np.ndarray) -> np.ndarray:
    """Cumulative mean ignoring NaNs; all NaN gives ones (an undefined error counts as the worst, 1)."""
    if np.isnan(x).sum() == len(x):
        return np.ones(len(x))
    sum_vals = np.nancumsum(x.astype(float))
    count_vals = np.cumsum(~np.isnan(x))
    return np.divide(sum_vals, count_vals, out=np.zeros_like(sum_vals), where=count_vals != 0)


def accumulate(is_tp: np.ndarray, conf: np.ndarray, npos: int, errors: Mapping[str, np.ndarray]) -> MetricData:
    """Precision/recall and TP-error curves of one class and threshold (devkit `accumulate`).

    `is_tp` and `conf` follow the visiting order; `errors` hold one value per true positive, in the same order.
    """
    if npos == 0 or not np.any(is_tp):
        return MetricData.no_predictions()
    tp = np.cumsum(is_tp).astype(float)
    fp = np.cumsum(~is_tp).astype(float)
    prec = tp / (fp + tp)
    rec = tp / float(npos)
    rec_interp = np.linspace(0, 1, N_RECALL)
    prec = np.interp(rec_interp, rec, prec, right=0)
    conf_interp = np.interp(rec_interp, rec, conf, right=0)
    match_conf = conf[is_tp]
    curves = {}
    for key in TP_METRICS:
        tmp = cummean(np.asarray(errors[key], float))
        curves[key] = np.interp(conf_interp[::-1], match_conf[::-1], tmp[::-1])[::-1]
    return MetricData(recall=rec_interp, precision=prec, confidence=conf_interp, **curves)


def calc_ap(md: MetricData, min_recall: float, min_precision: float) -> float:
    """Average precision over the recall points above `min_recall`, precision offset by `min_precision`."""
    prec = np.copy(md.precision)
    prec = prec[round(100 * min_recall) + 1 :]
    prec -= min_precision
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - min_precision)


def calc_tp(md: MetricData, min_recall: float, metric_name: str) -> float:
    """Mean TP error from just above `min_recall` to the highest recall reached (1 if that range is empty)."""
    first_ind = round(100 * min_recall) + 1
    last_ind = md.max_recall_ind
    if last_ind < first_ind:
        return 1.0
    return float(np.mean(getattr(md, metric_name)[first_ind : last_ind + 1]))


def yaw_diff(yaw_gt: np.ndarray, yaw_pred: np.ndarray, period: float) -> np.ndarray:
    """Absolute smallest angle between two headings for a given periodicity, in [0, pi]."""
    diff = (yaw_gt - yaw_pred + period / 2) % period - period / 2
    diff = np.where(diff > np.pi, diff - 2 * np.pi, diff)
    return np.abs(diff)


def scale_iou(size_gt: np.ndarray, size_pred: np.ndarray) -> np.ndarray:
    """IoU of two boxes after aligning their centres and headings (sizes [N, 3])."""
    inter = np.prod(np.minimum(size_gt, size_pred), axis=1)
    union = np.prod(size_gt, axis=1) + np.prod(size_pred, axis=1) - inter
    return inter / union


def tp_errors_of_matches(
    gt: Detections, pred: Detections, match: np.ndarray, dist: np.ndarray, yaw_period: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-prediction TP errors (NaN where unmatched): translation, velocity, scale, orientation, attribute."""
    n = len(pred)
    out = {key: np.full(n, np.nan) for key in TP_METRICS}
    m = np.flatnonzero(match >= 0)
    g = match[m]
    pb, gb = pred.boxes[m], gt.boxes[g]
    out["trans_err"][m] = dist[m]
    out["vel_err"][m] = planar_distance(pb[:, 7:9], gb[:, 7:9])
    out["scale_err"][m] = 1 - scale_iou(gb[:, 3:6], pb[:, 3:6])
    out["orient_err"][m] = yaw_diff(gb[:, 6], pb[:, 6], yaw_period[m])
    return out  # attr_err stays NaN: no attributes, so the devkit's cummean turns it into ones


def detection_metric_data(
    gt: Detections | Sequence[Mapping[str, Any]],
    pred: Detections | Sequence[Mapping[str, Any]],
    config: DetectionConfig | None = None,
) -> tuple[list[Any], dict[tuple[Any, float], MetricData]]:
    """Match and accumulate every class at every distance threshold; returns (classes, {(class, th): curves})."""
    config = config or DetectionConfig()
    gt = as_detections(gt, "ground truth", gt=True)
    pred = as_detections(pred, "prediction", gt=False)
    if len(gt) == 0:
        raise EvalInputError("the ground truth holds no boxes: there is nothing to evaluate against")
    classes, gt_cls, pred_cls = class_codes(gt.label, pred.label, config.classes)
    for role, det in (("ground truth", gt), ("prediction", pred)):
        if len(det) and det.boxes[:, 3:6].min() > 0:
            continue
        bad = ~np.all(det.boxes[:, 3:6] > 0, axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise EvalInputError(f"{role} record {i}: sizes l, w, h must be > 0, got {det.boxes[i, 3:6].tolist()}")
    gt_sample, pred_sample = shared_codes(gt.sample, pred.sample, "sample")
    n_cls = len(classes)
    gt_group = gt_sample * n_cls + gt_cls
    pred_group = pred_sample * n_cls + pred_cls

    order = devkit_order(pred.score, pred_sample)
    ths = tuple(float(t) for t in config.dist_ths)
    match, dist = match_greedy(gt_group, gt.xy, pred_group, pred.xy, order, ths)
    half_turn = np.array([c in config.half_turn_classes for c in classes], bool)
    yaw_period = np.where(half_turn[pred_cls], np.pi, 2 * np.pi) if len(pred) else np.zeros(0)

    metric_data: dict[tuple[Any, float], MetricData] = {}
    members_of = [order[pred_cls[order] == c] for c in range(len(classes))]
    tp_index = ths.index(float(config.dist_th_tp))
    errors = tp_errors_of_matches(gt, pred, match[tp_index], dist[tp_index], yaw_period)
    n_gt_of = np.bincount(gt_cls, minlength=len(classes))
    for c, name in enumerate(classes):
        members = members_of[c]
        conf = pred.score[members]
        for k, th in enumerate(ths):
            is_tp = match[k, members] >= 0
            if k == tp_index:
                errs = {key: errors[key][members][is_tp] for key in TP_METRICS}
            else:  # only read at dist_th_tp: left undefined (curves of ones) elsewhere
                errs = {key: np.full(int(is_tp.sum()), np.nan) for key in TP_METRICS}
            metric_data[(name, th)] = accumulate(is_tp, conf, int(n_gt_of[c]), errs)
    return classes, metric_data


def summarize_detection(
    classes: Sequence[Any], metric_data: Mapping[tuple[Any, float], MetricData], config: DetectionConfig | None = None
) -> dict[str, Any]:
    """AP, TP errors, mAP and NDS from the curves (devkit `DetectionEval.evaluate` + `DetectionMetrics`)."""
    config = config or DetectionConfig()
    ths = tuple(float(t) for t in config.dist_ths)
    undefined = dict(config.undefined_tp_metrics)
    label_aps: dict[str, dict[str, float]] = {}
    label_tp: dict[str, dict[str, float]] = {}
    max_recall: dict[str, dict[str, float]] = {}
    for name in classes:
        key = str(name)
        label_aps[key] = {
            str(th): calc_ap(metric_data[(name, th)], config.min_recall, config.min_precision) for th in ths
        }
        max_recall[key] = {str(th): metric_data[(name, th)].max_recall for th in ths}
        md = metric_data[(name, float(config.dist_th_tp))]
        label_tp[key] = {
            m: (np.nan if m in undefined.get(name, ()) else calc_tp(md, config.min_recall, m)) for m in TP_METRICS
        }
    mean_dist_aps = {c: float(np.mean(list(aps.values()))) for c, aps in label_aps.items()}
    mean_ap = float(np.mean(list(mean_dist_aps.values())))
    with np.errstate(all="ignore"):
        tp_errors = {m: _nanmean([label_tp[c][m] for c in label_tp]) for m in TP_METRICS}
    tp_scores = {m: max(0.0, 1.0 - tp_errors[m]) if np.isfinite(tp_errors[m]) else 0.0 for m in TP_METRICS}
    nds = float(config.mean_ap_weight * mean_ap + np.sum(list(tp_scores.values())))
    nds = nds / float(config.mean_ap_weight + len(tp_scores))
    return {
        "mAP": mean_ap,
        "mean_dist_aps": mean_dist_aps,
        "label_aps": label_aps,
        "label_tp_errors": label_tp,
        "tp_errors": tp_errors,
        "tp_scores": tp_scores,
        "NDS": nds,
        "max_recall": max_recall,
    }


def _nanmean(values: Iterable[float]) -> float:
    arr = np.asarray(list(values), float)
    return float(np.nanmean(arr)) if np.any(~np.isnan(arr)) else float("nan")


def evaluate_detection(
    gt: Detections | Sequence[Mapping[str, Any]],
    pred: Detections | Sequence[Mapping[str, Any]],
    config: DetectionConfig | None = None,
    *,
    classes: Iterable[Any] | None = None,
) -> dict[str, Any]:
    """nuScenes detection metrics of `pred` against `gt` (records or `Detections`), as a JSON-ready dict.

    Keys: `mAP`, `mean_dist_aps`, `label_aps[cls][th]`, `label_tp_errors[cls][err]`, `tp_errors`, `tp_scores`,
    `NDS`, `max_recall[cls][th]` (thresholds as strings, e.g. "0.5"). `classes` overrides `config.classes`.
    """
    config = config or DetectionConfig()
    if classes is not None:
        config = DetectionConfig(**{**config.__dict__, "classes": tuple(classes)})
    used, metric_data = detection_metric_data(gt, pred, config)
    return summarize_detection(used, metric_data, config)
