"""nuScenes tracking metrics: AMOTA, AMOTP and the legacy figures at the best-MOTA threshold.

Reproduces nuscenes-devkit 1.2.0 (`tracking/loaders.py:create_tracks`, `tracking/algo.py:TrackingEvaluation`,
`tracking/metrics.py`, py-motmetrics 1.4.0 underneath). Quirks kept on purpose, because the reference numbers
contain them:

* a predicted track's boxes all get the track's mean score (per scene and id, before interpolation);
* holes inside a track (ground truth and predictions, per scene and id, whatever the class) are filled at every
  frame of the scene between two boxes by linear interpolation whose weights are swapped: the box at time t
  between boxes at t0 < t1 gets `(1 - r) * b0 + r * b1` with `r = (t1 - t) / (t1 - t0)`; it takes the class of
  the later box, and its score `(1 - r) * s + r * s` may differ from `s` in the last bit;
* per class, frames with neither ground truth nor (thresholded) predictions are skipped; TID and LGD count the
  remaining frames of a class (each worth 0.5 s), and FAF = false positives per remaining frame x 100;
* recall thresholds: the scores of the predictions in MATCH events (not SWITCH) of a run without threshold,
  40 recall levels from 0.1 to 1 interpolated with `np.interp(..., right=0)`; levels above the recall reached
  count as MOTAR 0 and MOTP 2 m in AMOTA/AMOTP; a threshold reached twice is evaluated once and repeated;
* MOTAR = max(0, 1 - (misses + switches + FP - (1 - recall) x GT) / (recall x GT)) with recall = matches / GT,
  i.e. max(0, 1 - FP / matches); MOTA is clipped at 0 here (unlike py-motmetrics);
* the legacy figures (MOTA, MOTP, recall, MT, ML, FAF, TP, FP, FN, IDS, FRAG, TID, LGD) are read at the
  threshold with the highest MOTA (the highest recall among equals); `overall` sums MT, ML, TP, FP, FN, IDS,
  FRAG over classes and averages everything else, ignoring classes without ground truth (NaN);
* only scenes present in the ground truth are evaluated (the devkit loops over the ground-truth scenes), and a
  scene's frames are the distinct `t` of its ground truth and predictions;
* a class with ground truth but no matched prediction gets the devkit's worst values (`metric_worst`), where
  ML counts distinct ids across scenes (the devkit collects bare ids);
* distances are those of `sklearn.metrics.pairwise.euclidean_distances`, which the devkit calls per class and
  frame: |a|^2 - 2 a.b + |b|^2 with a BLAS dot product, so coincident boxes are ~1e-7 m apart rather than 0
  and the last bits depend on whether the frame holds one box on a side (see `_ops.blas_style_distances`);
  the gate is `d < 2 m`.

The frame loop of the devkit is replaced by the unit-wise replay of `_association`: every score threshold only
changes which predictions take part, and objects and tracks that were never paired cannot affect each other,
so each component of the track graph is evaluated once per distinct set of its predictions that some threshold
keeps (a component without contested frames just keeps its matches above the cut-off), and the counts are
summed per threshold.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._association import Pairs, associate_motmetrics
from ._ops import (
    blas_style_distances,
    combine_keys,
    connected_components,
    group_means_like_numpy,
    int_order,
    neighbour_pairs,
    segment_bounds,
)
from .records import EncodedTracks, EvalInputError, TrackingInput, Tracks, as_tracks, dense_rank, encode_tracking

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


@dataclass(frozen=True)
class SceneBoxes:
    """Boxes after the devkit's `create_tracks`: the records, then the interpolated boxes (inside a frame the
    devkit's order: records first, then new boxes by their track's first appearance)."""

    frame: np.ndarray  # global frame index (scenes in order, then time)
    track: np.ndarray  # dense (scene, id) index
    track_id: np.ndarray  # the id as given
    label: np.ndarray  # class index
    xy: np.ndarray
    score: np.ndarray


# ----------------------------------------------------------------------------------------------------------------
# Loading: track scores and interpolation (devkit loaders.create_tracks)
# ----------------------------------------------------------------------------------------------------------------


def average_track_scores(track: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Every box gets its track's mean score (bit-identical to `np.mean` per track)."""
    n_tracks = int(track.max()) + 1 if len(track) else 0
    return group_means_like_numpy(score, track, n_tracks)[track]


def interpolate_tracks(frame: np.ndarray, frame_time: np.ndarray, track: np.ndarray) -> dict[str, np.ndarray]:
    """Where and how the devkit's `interpolate_tracks` fills the holes of each track.

    `frame` indices are consecutive within a scene and rows of one track sit in distinct frames. Returns, per new
    box: its `frame`, the rows of its `left` and `right` neighbours in the track, the weight `r` of the right one,
    and `order`, the rank of its track in order of first appearance (new boxes of one frame follow that order).
    """
    empty = {
        "frame": np.zeros(0, np.int64),
        "left": np.zeros(0, np.int64),
        "right": np.zeros(0, np.int64),
        "r": np.zeros(0),
        "order": np.zeros(0, np.int64),
    }
    if len(frame) < 2:
        return empty
    by_track = int_order(track, frame)
    tr, fr = track[by_track], frame[by_track]
    starts, _ = segment_bounds(tr)
    track_order = np.zeros(int(tr.max()) + 1, np.int64)
    first_row = by_track[starts]  # rows come in frame then record order: the first row is the first box
    track_order[tr[starts]] = np.argsort(np.argsort(first_row, kind="stable"), kind="stable")
    same = np.r_[tr[1:] == tr[:-1], False]
    gap = np.r_[fr[1:] - fr[:-1], 0]
    hole = np.flatnonzero(same & (gap > 1))
    if hole.size == 0:
        return empty
    count = gap[hole] - 1
    left = by_track[np.repeat(hole, count)]
    right = by_track[np.repeat(hole + 1, count)]
    offset = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count) + 1
    new_frame = frame[left] + offset
    t, t0, t1 = frame_time[new_frame], frame_time[frame[left]], frame_time[frame[right]]
    r = (t1 - t) / (t1 - t0)  # the devkit's right_ratio, applied to the right box
    return {"frame": new_frame, "left": left, "right": right, "r": r, "order": track_order[track[left]]}


def create_tracks(side: EncodedTracks, frame_time: np.ndarray, gt: bool) -> SceneBoxes:
    """Averaged scores (predictions), interpolated holes, rows ordered like the devkit's per-frame lists."""
    score = side.score if gt else average_track_scores(side.track, side.score)
    new = interpolate_tracks(side.frame, frame_time, side.track)
    order = int_order(new["frame"], new["order"])  # new boxes of a frame: tracks in order of first appearance
    left, right, r = new["left"][order], new["right"][order], new["r"][order]
    # Rows: the records (their order inside a frame kept), then the new boxes; only the order inside a frame matters.
    xy = np.concatenate([side.xy, (1.0 - r)[:, None] * side.xy[left] + r[:, None] * side.xy[right]])
    return SceneBoxes(
        frame=np.r_[side.frame, new["frame"][order]],
        track=np.r_[side.track, side.track[left]],
        track_id=np.concatenate([side.track_id, side.track_id[left]]),
        label=np.r_[side.label, side.label[right]],
        xy=xy,
        score=np.r_[score, (1.0 - r) * score[left] + r * score[right]],
    )


# ----------------------------------------------------------------------------------------------------------------
# Thresholds (devkit TrackingEvaluation.compute_thresholds)
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Per-threshold figures from event counts (devkit metrics.py + py-motmetrics)
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


class Layout:
    """Items (rows, pairs or matches) grouped by component, their order kept inside a component."""

    def __init__(self, comp: np.ndarray, n_comp: int) -> None:
        items = np.flatnonzero(comp >= 0)
        self.items = items[np.argsort(comp[items], kind="stable")]
        self.count = np.bincount(comp[self.items], minlength=n_comp)
        self.start = np.cumsum(self.count) - self.count
        self.rank = np.full(len(comp), -1, np.int64)  # position of an item inside its component's block
        self.rank[self.items] = np.arange(len(self.items)) - np.repeat(self.start, self.count)

    def copies(self, scen_comp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items of each scenario's component: (items, scenario of each copy, first copy of each scenario)."""
        c = self.count[scen_comp]
        first = np.cumsum(c) - c
        scen = np.repeat(np.arange(len(scen_comp)), c)
        pos = np.repeat(self.start[scen_comp] - first, c) + np.arange(int(c.sum()))
        return self.items[pos], scen, first


class AtLeast:
    """How many items of a group score at least a threshold, for many (group, threshold) queries at once."""

    def __init__(self, group: np.ndarray, score: np.ndarray) -> None:
        self.scores, rank = np.unique(score, return_inverse=True)
        self.n_ranks = max(len(self.scores), 1)
        self.sorted = np.sort(group * self.n_ranks + rank.reshape(-1))

    def count(self, group: np.ndarray, thr: np.ndarray | float) -> np.ndarray:
        first_rank = np.searchsorted(self.scores, thr, "left")
        end = np.searchsorted(self.sorted, (group + 1) * self.n_ranks, "left")
        return end - np.searchsorted(self.sorted, group * self.n_ranks + first_rank, "left")

    def top_two(self, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Highest and second highest score of each group (-inf where missing)."""
        end = np.searchsorted(self.sorted, (group + 1) * self.n_ranks, "left")
        start = np.searchsorted(self.sorted, group * self.n_ranks, "left")
        out = []
        for back in (1, 2):
            pos = end - back
            ok = pos >= start
            rank = self.sorted[np.maximum(pos, 0)] % self.n_ranks if len(self.sorted) else pos
            out.append(np.where(ok, self.scores[rank] if len(self.scores) else -np.inf, -np.inf))
        return out[0], out[1]


@dataclass(frozen=True)
class _Problem:
    """Class-aware association problem: objects and tracks are (class, scene, id); pairs are gated.

    Components (of the graph linking objects and tracks that were ever paired) evolve independently; objects
    and tracks without any pair are outside every component (always missed / always false positives).
    """

    gt: SceneBoxes
    pred: SceneBoxes
    gt_obj: np.ndarray
    hyp_trk: np.ndarray
    n_obj: int
    n_trk: int
    pairs: Pairs  # distances as the devkit measures them with every prediction present
    dist_mm: np.ndarray  # per pair: distance with the matrix-matrix and the matrix-vector BLAS order
    dist_mv: np.ndarray
    n_gt_in_frame: np.ndarray  # per (class, frame) key
    comp_of_obj: np.ndarray  # component of every object (-1: never paired)
    comp_of_trk: np.ndarray
    n_comp: int
    comp_class: np.ndarray
    contested: np.ndarray  # per component: some frame offers an object or a prediction two candidates
    obj_present: np.ndarray  # per object: boxes, first and last frame
    obj_first: np.ndarray
    obj_last: np.ndarray
    row_rank: np.ndarray  # per ground-truth row: rank among its object's boxes in time
    holey: np.ndarray  # per object: frames not contiguous (only possible when an id changes class)
    comp_gt: np.ndarray  # per component: ground-truth boxes and objects
    comp_objects: np.ndarray
    rows_by_comp: Layout  # ground-truth rows that have a candidate pair
    pairs_by_comp: Layout
    hyp_count: AtLeast  # predictions of a component scoring at least a cut-off


def _build_problem(
    gt: SceneBoxes,
    pred: SceneBoxes,
    n_frames: int,
    dist_th: float,
    candidates: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> _Problem:
    """The association problem; `candidates` (pairs at least `dist_th` apart at most, exact distances) may come
    from a wider search shared with other metrics."""
    gt_obj, n_obj = dense_rank(combine_keys(gt.label, gt.track))
    hyp_trk, n_trk = dense_rank(combine_keys(pred.label, pred.track))
    gt_key, pred_key = gt.label * n_frames + gt.frame, pred.label * n_frames + pred.frame
    reach = dist_th * (1 + 1e-6) + 1e-6  # the devkit's distances differ from exact ones in the last bits
    if candidates is None:
        candidates = neighbour_pairs(gt_key, gt.xy, pred_key, pred.xy, reach)
    ig, ih, d_exact = candidates
    near = d_exact <= reach
    ig, ih = ig[near], ih[near]
    n_keys = int(max(gt_key.max(initial=0), pred_key.max(initial=0))) + 1
    n_gt_in_frame = np.bincount(gt_key, minlength=n_keys)
    n_pred_in_frame = np.bincount(pred_key, minlength=n_keys)
    key = gt_key[ig]
    d_mm, d_mv = blas_style_distances(gt.xy[ig], pred.xy[ih])
    d = np.where((n_gt_in_frame[key] == 1) != (n_pred_in_frame[key] == 1), d_mv, d_mm)
    keep = d < dist_th
    pairs = Pairs(ig[keep], ih[keep], d[keep])
    labels = connected_components(n_obj, n_trk, gt_obj[pairs.gt], hyp_trk[pairs.hyp])
    active = np.zeros(n_obj + n_trk, bool)
    active[gt_obj[pairs.gt]] = True
    active[n_obj + hyp_trk[pairs.hyp]] = True
    comp_codes = np.unique(labels[active], return_inverse=True)[1].reshape(-1)
    comp = np.full(n_obj + n_trk, -1, np.int64)
    comp[active] = comp_codes
    n_comp = int(comp_codes.max()) + 1 if comp_codes.size else 0
    comp_of_obj, comp_of_trk = comp[:n_obj], comp[n_obj:]
    pair_comp = comp_of_obj[gt_obj[pairs.gt]]
    comp_class = np.zeros(n_comp, np.int64)
    comp_class[pair_comp] = gt.label[pairs.gt]
    deg_g = np.bincount(pairs.gt, minlength=len(gt_obj))
    deg_h = np.bincount(pairs.hyp, minlength=len(hyp_trk))
    contested = np.bincount(pair_comp, weights=(deg_g[pairs.gt] > 1) | (deg_h[pairs.hyp] > 1), minlength=n_comp) > 0
    order = int_order(gt_obj, gt.frame)
    o, f = gt_obj[order], gt.frame[order]
    starts, ends = segment_bounds(o)
    row_rank = np.empty(len(o), np.int64)
    row_rank[order] = np.arange(len(o)) - np.repeat(starts, ends - starts)
    obj_present = np.bincount(gt_obj, minlength=n_obj)
    obj_first = np.zeros(n_obj, np.int64)
    obj_last = np.zeros(n_obj, np.int64)
    obj_first[o[starts]] = f[starts]
    obj_last[o[ends - 1]] = f[ends - 1]
    holey = obj_last - obj_first + 1 > obj_present
    in_comp = comp_of_obj >= 0
    comp_gt = np.bincount(comp_of_obj[in_comp], weights=obj_present[in_comp], minlength=n_comp).astype(np.int64)
    comp_objects = np.bincount(comp_of_obj[in_comp], minlength=n_comp)
    with_pair = np.zeros(len(gt_obj), bool)
    with_pair[pairs.gt] = True
    active_pred = np.flatnonzero(comp_of_trk[hyp_trk] >= 0) if n_trk else np.zeros(0, np.int64)
    return _Problem(
        gt,
        pred,
        gt_obj,
        hyp_trk,
        n_obj,
        n_trk,
        pairs,
        d_mm[keep],
        d_mv[keep],
        n_gt_in_frame,
        comp_of_obj,
        comp_of_trk,
        n_comp,
        comp_class,
        contested,
        obj_present,
        obj_first,
        obj_last,
        row_rank,
        holey,
        comp_gt,
        comp_objects,
        Layout(np.where(with_pair, comp_of_obj[gt_obj], -1), n_comp),
        Layout(pair_comp, n_comp),
        AtLeast(comp_of_trk[hyp_trk[active_pred]], pred.score[active_pred]),
    )


@dataclass(frozen=True)
class _Matches:
    """Matched ground-truth rows of a set of scenarios (a component with the predictions above a cut-off)."""

    scen: np.ndarray
    gt_row: np.ndarray
    hyp_row: np.ndarray
    dist: np.ndarray
    src_pair: np.ndarray  # the problem's pair of each match

    def subset(self, mask: np.ndarray, scen: np.ndarray | None = None) -> _Matches:
        return _Matches(
            self.scen[mask] if scen is None else scen,
            self.gt_row[mask],
            self.hyp_row[mask],
            self.dist[mask],
            self.src_pair[mask],
        )

    @staticmethod
    def concat(parts: list[_Matches]) -> _Matches:
        return _Matches(
            *(np.concatenate([getattr(m, f) for m in parts]) for f in ("scen", "gt_row", "hyp_row", "dist", "src_pair"))
        )


def _replay(p: _Problem, scen_comp: np.ndarray, scen_cut: np.ndarray) -> _Matches:
    """Replay scenario s = component `scen_comp[s]` with the predictions scoring >= `scen_cut[s]`.

    Only ground-truth rows with a candidate pair take part: the others are misses in every scenario.
    """
    if len(scen_comp) == p.n_comp and np.array_equal(scen_comp, np.arange(p.n_comp)) and np.all(scen_cut == -np.inf):
        # Every component with every prediction: the problem itself (scenario = component).
        gt_pair, _ = associate_motmetrics(
            len(p.gt_obj), len(p.hyp_trk), p.gt_obj, p.hyp_trk, p.gt.frame, p.pairs, p.n_obj, switches=False
        )
        m = np.flatnonzero(gt_pair >= 0)
        k = gt_pair[m]
        return _Matches(p.comp_of_obj[p.gt_obj[m]], m, p.pairs.hyp[k], p.pairs.dist[k], k)
    g_rows, g_scen, g_first = p.rows_by_comp.copies(scen_comp)
    src, pair_scen, _ = p.pairs_by_comp.copies(scen_comp)
    keep = p.pred.score[p.pairs.hyp[src]] >= scen_cut[pair_scen]
    src, pair_scen = src[keep], pair_scen[keep]
    n_pred = len(p.pred.score)
    h_key = pair_scen * n_pred + p.pairs.hyp[src]
    pair_h, n_h = dense_rank(h_key)
    h_nodes = np.zeros(n_h, np.int64)
    h_nodes[pair_h] = h_key
    h_rows, h_scen = h_nodes % n_pred, h_nodes // n_pred
    pairs = Pairs(g_first[pair_scen] + p.rows_by_comp.rank[p.pairs.gt[src]], pair_h, p.pairs.dist[src])
    obj, n_obj = dense_rank(g_scen * p.n_obj + p.gt_obj[g_rows])
    trk, _ = dense_rank(h_scen * p.n_trk + p.hyp_trk[h_rows])
    time = combine_keys(g_scen, p.gt.frame[g_rows])
    gt_pair, _ = associate_motmetrics(len(g_rows), len(h_nodes), obj, trk, time, pairs, n_obj, switches=False)
    m = np.flatnonzero(gt_pair >= 0)
    k = gt_pair[m]
    return _Matches(g_scen[m], g_rows[m], h_rows[pairs.hyp[k]], pairs.dist[k], src[k])


def _restrict(p: _Problem, full: _Matches, scen_comp: np.ndarray, scen_cut: np.ndarray) -> _Matches:
    """Scenarios of uncontested components: every candidate pair is matched, so keep the full run's matches
    whose prediction scores >= the cut-off."""
    layout = Layout(p.comp_of_obj[p.gt_obj[full.gt_row]], p.n_comp)
    idx, scen, _ = layout.copies(scen_comp)
    keep = p.pred.score[full.hyp_row[idx]] >= scen_cut[scen]
    return full.subset(idx[keep], scen[keep])


def _match_sequences(p: _Problem, m: _Matches) -> dict[str, np.ndarray]:
    """Per match, in (scenario, object, time) order: object, frame, track and the flags that depend on the
    previous match of the same object: switch (another track) and fragmentation (misses in between)."""
    obj = p.gt_obj[m.gt_row]
    frame = p.gt.frame[m.gt_row]
    order = int_order(m.scen, obj, frame)
    obj, frame, scen = obj[order], frame[order], m.scen[order]
    trk = p.hyp_trk[m.hyp_row[order]]
    rank = p.row_rank[m.gt_row[order]]
    n = len(order)
    same = np.zeros(n, bool)
    same[1:] = (obj[1:] == obj[:-1]) & (scen[1:] == scen[:-1])
    switch, frag, gap = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.int64)
    switch[1:] = same[1:] & (trk[1:] != trk[:-1])
    frag[1:] = same[1:] & (rank[1:] - rank[:-1] > 1)
    gap[1:] = np.where(same[1:], frame[1:] - frame[:-1] - 1, 0)
    return {
        "order": order,
        "scen": scen,
        "obj": obj,
        "frame": frame,
        "same": same,
        "switch": switch,
        "frag": frag,
        "gap": gap,
    }


def _scenario_stats(
    p: _Problem, m: _Matches, scen_comp: np.ndarray, scen_cut: np.ndarray, q: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """Summed counts [n_scen, len(STAT_NAMES)] of each scenario; objects with holes leave out TID and LGD.

    `q` may hold `_match_sequences(p, m)` when already computed."""
    n_scen = len(scen_comp)
    q = _match_sequences(p, m) if q is None else q
    scen, obj = q["scen"], q["obj"]
    first = ~q["same"]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(scen)].astype(np.int64) if len(starts) else starts
    s_scen, s_obj = scen[starts], obj[starts]  # one entry per tracked (scenario, object)
    tracked = ends - starts
    first_f, last_f = q["frame"][starts], q["frame"][ends - 1]
    inner_gap = np.maximum.reduceat(q["gap"], starts) if len(starts) else np.zeros(0, np.int64)
    gap = np.maximum(inner_gap, np.maximum(first_f - p.obj_first[s_obj], p.obj_last[s_obj] - last_f))
    ratio = tracked / p.obj_present[s_obj]
    simple = ~p.holey[s_obj]
    n_match = np.bincount(scen, minlength=n_scen)
    n_switch = np.bincount(scen, weights=q["switch"], minlength=n_scen)
    gt = p.comp_gt[scen_comp]
    columns = {
        "gt": gt,
        "tp": n_match - n_switch,
        "ids": n_switch,
        "fn": gt - n_match,
        "fp": p.hyp_count.count(scen_comp, scen_cut) - n_match,
        "dsum": np.bincount(m.scen, weights=m.dist, minlength=n_scen),
        "mt": np.bincount(s_scen, weights=ratio >= 0.8, minlength=n_scen),
        "ml": p.comp_objects[scen_comp] - np.bincount(s_scen, weights=ratio >= 0.2, minlength=n_scen),
        "frag": np.bincount(scen, weights=q["frag"], minlength=n_scen),
        "tid_sum": np.bincount(s_scen[simple], weights=(first_f - p.obj_first[s_obj])[simple] * 0.5, minlength=n_scen),
        "lgd_sum": np.bincount(s_scen[simple], weights=gap[simple] * 0.5, minlength=n_scen),
        "tracked_objects": np.bincount(s_scen, minlength=n_scen),
    }
    return np.stack([np.asarray(columns[name], float) for name in STAT_NAMES], axis=1)


def _holey_tid_lgd(
    p: _Problem, m: _Matches, scen_of_comp: np.ndarray, objs: np.ndarray, nonempty: np.ndarray
) -> tuple[float, float]:
    """TID and LGD sums of objects with holes, counting only the frames left non-empty at this threshold."""
    obj = p.gt_obj[m.gt_row]
    sel = np.flatnonzero(np.isin(obj, objs) & (m.scen == scen_of_comp[p.comp_of_obj[obj]]))
    if sel.size == 0:
        return 0.0, 0.0
    position = np.cumsum(nonempty) - 1
    o = obj[sel]
    pos = position[p.gt.frame[m.gt_row[sel]]]
    order = int_order(o, pos)
    o, pos = o[order], pos[order]
    starts, ends = segment_bounds(o)
    same = np.r_[False, o[1:] == o[:-1]]
    inner = np.maximum.reduceat(np.where(same, np.r_[0, pos[1:] - pos[:-1] - 1], 0), starts)
    first, last = pos[starts], pos[ends - 1]
    appear, leave = position[p.obj_first[o[starts]]], position[p.obj_last[o[starts]]]
    gap = np.maximum(inner, np.maximum(first - appear, leave - last))
    return float(np.sum((first - appear) * 0.5)), float(np.sum(gap * 0.5))


@dataclass(frozen=True)
class _OrderSensitive:
    """Matches whose distance depends on the BLAS order by more than rounding noise.

    The devkit measures each frame with the predictions left at the threshold. A frame that holds several
    predictions without threshold but a single one at some threshold switches BLAS kernel there, which changes
    the distance of (nearly) coincident boxes; only matches in such frames are kept here.
    """

    rows: np.ndarray
    comp: np.ndarray
    key: np.ndarray  # (class, frame) key
    delta: np.ndarray  # distance with the other kernel minus the distance used in the replay
    top: np.ndarray  # the two highest prediction scores of the frame: one prediction is left in (second, top]
    second: np.ndarray

    @classmethod
    def of(cls, p: _Problem, m: _Matches, n_frames: int, counter: AtLeast) -> _OrderSensitive:
        src = m.src_pair
        g = m.gt_row
        key = p.gt.label[g] * n_frames + p.gt.frame[g]
        candidates = np.flatnonzero(
            (np.abs(p.dist_mm[src] - p.dist_mv[src]) > 1e-11) & (counter.count(key, -np.inf) >= 2)
        )
        c = candidates
        top, second = counter.top_two(key[c])
        # Kernel without threshold: matrix-vector iff exactly one side holds one box; with a single prediction
        # left, the other one.
        other = np.where(p.n_gt_in_frame[key[c]] == 1, p.dist_mm[src[c]], p.dist_mv[src[c]])
        return cls(c, p.comp_of_obj[p.gt_obj[g[c]]], key[c], other - m.dist[c], top, second)

    def correction(self, m: _Matches, scen_of_comp: np.ndarray, thr: float) -> float:
        """Change of the summed matched distance when measured with the kernel this threshold implies."""
        sel = (thr > self.second) & (thr <= self.top)
        if not sel.any():
            return 0.0
        sel &= m.scen[self.rows] == scen_of_comp[self.comp]
        return float(np.sum(self.delta[sel]))


def nuscenes_tracking(
    gt: Tracks | Sequence[Mapping[str, Any]],
    pred: Tracks | Sequence[Mapping[str, Any]],
    config: TrackingConfig | None = None,
) -> dict[str, Any]:
    """AMOTA, AMOTP and the legacy figures with the nuScenes devkit's semantics.

    Returns `{"overall": {metric: value}, "per_class": {metric: {class: value}}}` with the devkit's metric names
    (amota, amotp, recall, motar, gt, mota, motp, mt, ml, faf, tp, fp, fn, ids, frag, tid, lgd).
    """
    config = config or TrackingConfig()
    gt = as_tracks(gt, "ground truth", gt=True)
    pred = as_tracks(pred, "prediction", gt=False)
    if len(gt) == 0:
        raise EvalInputError("the ground truth holds no boxes: there is nothing to evaluate against")
    return nuscenes_from_input(encode_tracking(gt, pred, config.classes), config)


def nuscenes_from_input(
    inp: TrackingInput, config: TrackingConfig | None = None, share_radius: float | None = None
) -> dict[str, Any]:
    """`nuscenes_tracking` on an input already validated and encoded by `encode_tracking`.

    With `share_radius`, the candidate search reaches that far too and the result carries, under the key
    "_pairs", the (ground-truth record, prediction record, exact distance) pairs of one class and frame within
    it, so that other metrics of the same input need not search again.
    """
    config = config or TrackingConfig()
    classes = inp.classes
    gt_scenes = np.unique(inp.frame_scene[inp.gt.frame])
    pred_records = np.flatnonzero(np.isin(inp.frame_scene[inp.pred.frame], gt_scenes))
    pred = inp.pred.select(pred_records)
    n_frames = len(inp.frame_scene)
    gtb = create_tracks(inp.gt, inp.frame_time, gt=True)
    prb = create_tracks(pred, inp.frame_time, gt=False)
    candidates = shared = None
    if share_radius is not None:
        radius = max(share_radius, config.dist_th_tp * (1 + 1e-6) + 1e-6)
        candidates = neighbour_pairs(
            gtb.label * n_frames + gtb.frame, gtb.xy, prb.label * n_frames + prb.frame, prb.xy, radius
        )
        ig, ih, d = candidates
        keep = (ig < len(inp.gt.frame)) & (ih < len(pred_records)) & (d <= share_radius)  # records, not holes
        shared = (ig[keep], pred_records[ih[keep]], d[keep])
    p = _build_problem(gtb, prb, n_frames, config.dist_th_tp, candidates)
    n_comp = p.n_comp

    # Run without threshold: MATCH events give the thresholds; it is also every unit's "all kept" scenario.
    all_comps, no_cut = np.arange(n_comp), np.full(n_comp, -np.inf)
    full = _replay(p, all_comps, no_cut)
    seq = _match_sequences(p, full)
    match_rows = full.hyp_row[seq["order"][~seq["switch"]]]
    n_cls = len(classes)
    gt_boxes = np.bincount(gtb.label, minlength=n_cls)
    thresholds = [
        compute_thresholds(
            prb.score[match_rows[prb.label[match_rows] == c]],
            int(gt_boxes[c]),
            config.min_recall,
            config.num_thresholds,
        )
        if gt_boxes[c]
        else [float("nan")] * config.num_thresholds
        for c in range(n_cls)
    ]

    # Each unit's distinct prediction scores (descending); a threshold keeps the first j of them.
    h_comp = p.comp_of_trk[p.hyp_trk] if len(p.hyp_trk) else np.zeros(0, np.int64)
    act = np.flatnonzero(h_comp >= 0)
    order = np.lexsort((-prb.score[act], h_comp[act]))
    cs_comp, cs_score = h_comp[act][order], prb.score[act][order]
    distinct = (
        np.r_[True, (cs_comp[1:] != cs_comp[:-1]) | (cs_score[1:] != cs_score[:-1])] if act.size else np.zeros(0, bool)
    )
    cs_comp, cs_score = cs_comp[distinct], cs_score[distinct]
    n_unique = np.bincount(cs_comp, minlength=n_comp)
    cs_start = np.cumsum(n_unique) - n_unique
    valid = [np.unique([t for t in thresholds[c] if not np.isnan(t)]) for c in range(n_cls)]
    kept = {
        (c, thr): np.bincount(cs_comp[cs_score >= thr], minlength=n_comp)
        for c in range(n_cls)
        for thr in valid[c].tolist()
    }

    # Partial scenarios (some but not all of a unit's predictions kept): uncontested units keep their matches
    # above the cut-off, the others are replayed.
    span = int(n_unique.max()) + 1 if n_comp else 1
    part_keys = np.unique(
        np.concatenate(
            [np.flatnonzero((j > 0) & (j < n_unique)) * span + j[(j > 0) & (j < n_unique)] for j in kept.values()]
            + [np.zeros(0, np.int64)]
        )
    )
    pk_comp, pk_j = part_keys // span, part_keys % span
    pk_cut = cs_score[cs_start[pk_comp] + pk_j - 1] if part_keys.size else np.zeros(0)
    parts = []
    for contested in (False, True):
        sel = np.flatnonzero(p.contested[pk_comp] == contested)
        if sel.size:
            run = _replay if contested else functools.partial(_restrict, full=full)
            got = run(p, scen_comp=pk_comp[sel], scen_cut=pk_cut[sel])
            parts.append(got.subset(np.ones(len(got.scen), bool), sel[got.scen]))
    part = _Matches.concat(parts) if parts else None

    # Scenario table: rows [0, C) every prediction kept, [C, 2C) none kept, then the partial scenarios.
    table = np.zeros((2 * n_comp + len(part_keys), len(STAT_NAMES)))
    table[:n_comp] = _scenario_stats(p, full, all_comps, no_cut, seq)
    table[n_comp : 2 * n_comp, STAT_NAMES.index("gt")] = p.comp_gt
    table[n_comp : 2 * n_comp, STAT_NAMES.index("fn")] = p.comp_gt
    table[n_comp : 2 * n_comp, STAT_NAMES.index("ml")] = p.comp_objects
    if part is not None:
        table[2 * n_comp :] = _scenario_stats(p, part, pk_comp, pk_cut)

    obj_class = np.zeros(p.n_obj, np.int64)
    obj_class[p.gt_obj] = gtb.label
    counter = AtLeast(prb.label * n_frames + prb.frame, prb.score)
    replays = [(full, 0, _OrderSensitive.of(p, full, n_frames, counter))]
    if part is not None:
        replays.append((part, 2 * n_comp, _OrderSensitive.of(p, part, n_frames, counter)))
    lonely_gt = p.comp_of_obj[p.gt_obj] < 0
    lonely_pred = h_comp < 0
    # Highest prediction score per (class, frame): a frame without ground truth is skipped below it.
    pred_key = prb.label * n_frames + prb.frame
    by_key = np.argsort(pred_key, kind="stable")
    key_start, _ = segment_bounds(pred_key[by_key])
    top_score = np.full(n_cls * n_frames, -np.inf)
    if by_key.size:
        top_score[pred_key[by_key[key_start]]] = np.maximum.reduceat(prb.score[by_key], key_start)
    per_class: dict[str, dict[str, float]] = {m: {} for m in METRIC_ORDER}
    for c, name in enumerate(classes):
        if gt_boxes[c] == 0:
            for m in METRIC_ORDER:
                per_class[m][str(name)] = float("nan")
            continue
        comps = np.flatnonzero(p.comp_class == c)
        gt_c, pred_c = gtb.label == c, prb.label == c
        has_gt = np.bincount(gtb.frame[gt_c], minlength=n_frames) > 0
        max_score = top_score[c * n_frames : (c + 1) * n_frames]
        lonely_rows = int(np.sum(lonely_gt & gt_c))
        lonely_objs = len(np.unique(p.gt_obj[lonely_gt & gt_c]))
        lonely_scores = np.sort(prb.score[lonely_pred & pred_c])
        holey = np.flatnonzero(p.holey & (p.comp_of_obj >= 0) & (obj_class == c))
        values: dict[float, dict[str, float]] = {}
        for thr in valid[c].tolist():
            j = kept[(c, thr)]
            scen = np.where(j == 0, n_comp + all_comps, all_comps)
            mid = np.flatnonzero((j > 0) & (j < n_unique))
            scen[mid] = 2 * n_comp + np.searchsorted(part_keys, mid * span + j[mid])
            counts = dict(zip(STAT_NAMES, table[scen[comps]].sum(axis=0).tolist(), strict=True))
            counts["gt"] += lonely_rows
            counts["fn"] += lonely_rows
            counts["ml"] += lonely_objs
            counts["fp"] += len(lonely_scores) - int(np.searchsorted(lonely_scores, thr, "left"))
            nonempty = has_gt | (max_score >= thr)
            counts["num_frames"] = int(nonempty.sum())
            for matches, offset, sensitive in replays:
                scen_c = np.full(n_comp, -1, np.int64)  # this class's units only
                scen_c[comps] = scen[comps] - offset
                counts["dsum"] += sensitive.correction(matches, scen_c, thr)
                if holey.size:
                    tid, lgd = _holey_tid_lgd(p, matches, scen_c, holey, nonempty)
                    counts["tid_sum"] += tid
                    counts["lgd_sum"] += lgd
            values[thr] = threshold_metrics(counts)
        _store_class(per_class, str(name), thresholds[c], values, config, gtb, c)
    result: dict[str, Any] = {"overall": _overall(per_class), "per_class": per_class}
    if shared is not None:
        result["_pairs"] = shared
    return result


def _overall(per_class: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
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


def _store_class(
    per_class: dict[str, dict[str, float]],
    key: str,
    thresholds: list[float],
    values: Mapping[float, Mapping[str, float]],
    config: TrackingConfig,
    gtb: SceneBoxes,
    c: int,
) -> None:
    """Expand per-threshold figures to the recall levels, then pick the best MOTA and average AMOTA/AMOTP."""
    worst = dict(config.metric_worst)
    series: dict[str, np.ndarray] = {}
    if not values:
        gt_c = gtb.label == c
        special = {
            "ml": float(len(np.unique(gtb.track_id[gt_c]))),
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
