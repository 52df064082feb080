"""The devkit's `TrackingEvaluation` (`algo.py`): create the tracks, find the score thresholds from a run without
threshold, count each class's events at every threshold, and read off the figures.

The devkit's frame loop is replaced by scenarios: every score threshold only changes which predictions take part,
and objects and tracks that were never paired cannot affect each other, so each component of the track graph is
replayed once per distinct set of its predictions some threshold keeps, and the counts are summed per threshold.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._codes import segment_bounds
from .._ops import neighbour_pairs
from ..records import Tracks
from ..tracking_input import TrackingInput, tracking_input
from .loaders import SceneBoxes, create_tracks
from .metrics import (
    METRIC_ORDER,
    STAT_NAMES,
    TrackingConfig,
    compute_thresholds,
    overall,
    summarize_class,
    threshold_metrics,
)
from .problem import AtLeast, Problem, build_problem
from .replay import Matches, OrderSensitive, holey_tid_lgd, match_sequences, replay, restrict, scenario_stats


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
    return nuscenes_from_input(tracking_input(gt, pred, config.classes), config)


def nuscenes_from_input(
    inp: TrackingInput, config: TrackingConfig | None = None, share_radius: float | None = None
) -> dict[str, Any]:
    """`nuscenes_tracking` on an input already validated and encoded by `encode_tracking`.

    With `share_radius`, the candidate search reaches that far too and the result carries, under the key
    "_pairs", the (ground-truth record, prediction record, exact distance) pairs of one class and frame within
    it, so that other metrics of the same input need not search again.
    """
    config = config or TrackingConfig()
    gt_scenes = np.unique(inp.frame_scene[inp.gt.frame])  # the devkit loops over the ground truth's scenes
    pred_records = np.flatnonzero(np.isin(inp.frame_scene[inp.pred.frame], gt_scenes))
    n_frames = len(inp.frame_scene)
    gt_tracks = create_tracks(inp.gt, inp.frame_time, gt=True)
    pred_tracks = create_tracks(inp.pred.select(pred_records), inp.frame_time, gt=False)
    candidates = shared = None
    if share_radius is not None:
        radius = max(share_radius, config.dist_th_tp * (1 + 1e-6) + 1e-6)
        candidates = neighbour_pairs(
            gt_tracks.label * n_frames + gt_tracks.frame,
            gt_tracks.xy,
            pred_tracks.label * n_frames + pred_tracks.frame,
            pred_tracks.xy,
            radius,
        )
        ig, ih, d = candidates
        keep = (ig < len(inp.gt.frame)) & (ih < len(pred_records)) & (d <= share_radius)  # records, not holes
        shared = (ig[keep], pred_records[ih[keep]], d[keep])
    problem = build_problem(gt_tracks, pred_tracks, n_frames, config.dist_th_tp, candidates)

    # Run without threshold: MATCH events give the thresholds; it is also every component's "all kept" scenario.
    full = replay(problem, np.arange(problem.n_comp), np.full(problem.n_comp, -np.inf))
    sequences = match_sequences(problem, full)
    thresholds = class_thresholds(full, sequences, gt_tracks, pred_tracks, len(inp.classes), config)
    valid = [np.unique([t for t in per_class if not np.isnan(t)]) for per_class in thresholds]
    scores = UnitScores.of(problem)
    kept = {(c, thr): scores.kept(thr) for c in range(len(inp.classes)) for thr in valid[c].tolist()}
    scenarios = Scenarios.of(problem, full, sequences, scores, list(kept.values()))
    counter = AtLeast(pred_tracks.label * n_frames + pred_tracks.frame, pred_tracks.score)
    sensitive = [(m, first, OrderSensitive.of(problem, m, n_frames, counter)) for m, first in scenarios.matches]
    top_score = top_scores(pred_tracks, len(inp.classes), n_frames)

    per_class: dict[str, dict[str, float]] = {m: {} for m in METRIC_ORDER}
    for c, name in enumerate(inp.classes):
        if not np.any(gt_tracks.label == c):
            for m in METRIC_ORDER:
                per_class[m][str(name)] = float("nan")
            continue
        counts = ClassCounts(problem, scenarios, sensitive, top_score[c * n_frames : (c + 1) * n_frames], c)
        values = {thr: threshold_metrics(counts.at(thr, kept[(c, thr)])) for thr in valid[c].tolist()}
        summarize_class(per_class, str(name), thresholds[c], values, config, gt_tracks, c)
    result: dict[str, Any] = {"overall": overall(per_class), "per_class": per_class}
    if shared is not None:
        result["_pairs"] = shared
    return result


def class_thresholds(
    full: Matches,
    sequences: dict[str, np.ndarray],
    gt_tracks: SceneBoxes,
    pred_tracks: SceneBoxes,
    n_classes: int,
    config: TrackingConfig,
) -> list[list[float]]:
    """Per class, the score thresholds of the recall levels: from the scores of the predictions in MATCH events
    (not SWITCH) of the run without threshold."""
    match_rows = full.hyp_row[sequences["order"][~sequences["switch"]]]
    gt_boxes = np.bincount(gt_tracks.label, minlength=n_classes)
    return [
        compute_thresholds(
            pred_tracks.score[match_rows[pred_tracks.label[match_rows] == c]],
            int(gt_boxes[c]),
            config.min_recall,
            config.num_thresholds,
        )
        if gt_boxes[c]
        else [float("nan")] * config.num_thresholds
        for c in range(n_classes)
    ]


@dataclass(frozen=True)
class UnitScores:
    """Each component's distinct prediction scores, highest first: a threshold keeps the first `kept(thr)`."""

    comp: np.ndarray  # component of each distinct score
    score: np.ndarray
    count: np.ndarray  # per component: its distinct scores
    start: np.ndarray  # per component: where its scores begin

    @classmethod
    def of(cls, problem: Problem) -> UnitScores:
        pred_comp = problem.comp_of_trk[problem.hyp_trk] if len(problem.hyp_trk) else np.zeros(0, np.int64)
        active = np.flatnonzero(pred_comp >= 0)
        order = np.lexsort((-problem.pred.score[active], pred_comp[active]))
        comp, score = pred_comp[active][order], problem.pred.score[active][order]
        distinct = np.r_[True, (comp[1:] != comp[:-1]) | (score[1:] != score[:-1])] if active.size else active > 0
        comp, score = comp[distinct], score[distinct]
        count = np.bincount(comp, minlength=problem.n_comp)
        return cls(comp, score, count, np.cumsum(count) - count)

    def kept(self, thr: float) -> np.ndarray:
        """Per component: how many of its distinct scores reach `thr`."""
        return np.bincount(self.comp[self.score >= thr], minlength=len(self.count))

    def cut(self, comp: np.ndarray, kept: np.ndarray) -> np.ndarray:
        """The lowest score kept when `kept` of a component's distinct scores are."""
        return self.score[self.start[comp] + kept - 1] if comp.size else np.zeros(0)


@dataclass(frozen=True)
class Scenarios:
    """Every scenario some threshold asks for, with its summed counts (`table`, one row per scenario): rows [0, C)
    keep every prediction of a component, [C, 2C) none, then the partial scenarios, keyed component x span +
    number of distinct scores kept (`keys`, sorted)."""

    n_comp: int
    count: np.ndarray  # per component: its distinct scores
    keys: np.ndarray
    span: int
    table: np.ndarray
    matches: list[tuple[Matches, int]]  # the replayed matches, each with its first row in the table

    @classmethod
    def of(
        cls,
        problem: Problem,
        full: Matches,
        sequences: dict[str, np.ndarray],
        scores: UnitScores,
        kept: list[np.ndarray],
    ) -> Scenarios:
        n_comp, count = problem.n_comp, scores.count
        span = int(count.max()) + 1 if n_comp else 1
        partial = [np.flatnonzero((j > 0) & (j < count)) * span + j[(j > 0) & (j < count)] for j in kept]
        keys = np.unique(np.concatenate([*partial, np.zeros(0, np.int64)]))
        part_comp, part_kept = keys // span, keys % span
        part_cut = scores.cut(part_comp, part_kept)
        # Uncontested components keep the full run's matches above the cut-off; the others are replayed.
        parts = []
        for contested in (False, True):
            sel = np.flatnonzero(problem.contested[part_comp] == contested)
            if sel.size:
                run = replay if contested else functools.partial(restrict, full=full)
                got = run(problem, scen_comp=part_comp[sel], scen_cut=part_cut[sel])
                parts.append(got.subset(np.ones(len(got.scen), bool), sel[got.scen]))
        part = Matches.concat(parts) if parts else None
        table = np.zeros((2 * n_comp + len(keys), len(STAT_NAMES)))
        table[:n_comp] = scenario_stats(problem, full, np.arange(n_comp), np.full(n_comp, -np.inf), sequences)
        for name, value in (("gt", problem.comp_gt), ("fn", problem.comp_gt), ("ml", problem.comp_objects)):
            table[n_comp : 2 * n_comp, STAT_NAMES.index(name)] = value
        if part is not None:
            table[2 * n_comp :] = scenario_stats(problem, part, part_comp, part_cut)
        matches = [(full, 0)] + ([(part, 2 * n_comp)] if part is not None else [])
        return cls(n_comp, count, keys, span, table, matches)

    def rows(self, kept: np.ndarray) -> np.ndarray:
        """Per component: its scenario's row when `kept` of its distinct scores are kept."""
        comps = np.arange(self.n_comp)
        rows = np.where(kept == 0, self.n_comp + comps, comps)
        mid = np.flatnonzero((kept > 0) & (kept < self.count))
        rows[mid] = 2 * self.n_comp + np.searchsorted(self.keys, mid * self.span + kept[mid])
        return rows


def top_scores(pred: SceneBoxes, n_classes: int, n_frames: int) -> np.ndarray:
    """The highest prediction score per (class, frame): a frame without ground truth is skipped below it."""
    pred_key = pred.label * n_frames + pred.frame
    by_key = np.argsort(pred_key, kind="stable")
    key_start, _ = segment_bounds(pred_key[by_key])
    top = np.full(n_classes * n_frames, -np.inf)
    if by_key.size:
        top[pred_key[by_key[key_start]]] = np.maximum.reduceat(pred.score[by_key], key_start)
    return top


class ClassCounts:
    """The event counts of class `c` at a threshold: its components' scenarios, plus the objects and predictions
    outside every component (always missed / always false positives), the frames the devkit skips, and what the
    scenarios cannot carry: distances measured with another BLAS order, TID and LGD of objects with holes."""

    def __init__(
        self,
        problem: Problem,
        scenarios: Scenarios,
        sensitive: list[tuple[Matches, int, OrderSensitive]],
        top_score: np.ndarray,
        c: int,
    ) -> None:
        p = self.problem = problem
        self.scenarios, self.sensitive, self.top_score = scenarios, sensitive, top_score
        self.comps = np.flatnonzero(p.comp_class == c)
        gt_c, pred_c = p.gt.label == c, p.pred.label == c
        self.has_gt = np.bincount(p.gt.frame[gt_c], minlength=len(top_score)) > 0
        lonely_gt = p.gt_outside & gt_c
        self.lonely_rows = int(np.sum(lonely_gt))
        self.lonely_objects = len(np.unique(p.gt_obj[lonely_gt]))
        self.lonely_scores = np.sort(p.pred.score[p.pred_outside & pred_c])
        self.holey = np.flatnonzero(p.holey & (p.comp_of_obj >= 0) & (p.obj_class == c))

    def at(self, thr: float, kept: np.ndarray) -> dict[str, float]:
        """Counts (`STAT_NAMES` and `num_frames`) when each component keeps `kept` of its distinct scores."""
        rows = self.scenarios.rows(kept)
        counts = dict(zip(STAT_NAMES, self.scenarios.table[rows[self.comps]].sum(axis=0).tolist(), strict=True))
        counts["gt"] += self.lonely_rows
        counts["fn"] += self.lonely_rows
        counts["ml"] += self.lonely_objects
        counts["fp"] += len(self.lonely_scores) - int(np.searchsorted(self.lonely_scores, thr, "left"))
        nonempty = self.has_gt | (self.top_score >= thr)
        counts["num_frames"] = int(nonempty.sum())
        for matches, first, sensitive in self.sensitive:
            scen = np.full(self.problem.n_comp, -1, np.int64)  # this class's components only
            scen[self.comps] = rows[self.comps] - first
            counts["dsum"] += sensitive.correction(matches, scen, thr)
            if self.holey.size:
                tid, lgd = holey_tid_lgd(self.problem, matches, scen, self.holey, nonempty)
                counts["tid_sum"] += tid
                counts["lgd_sum"] += lgd
        return counts
