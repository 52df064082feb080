"""The class-aware association problem of the devkit's frame loop: objects and tracks are (class, scene, id),
pairs are gated as the devkit measures distances, and the graph linking objects and tracks ever paired splits
them into components that evolve independently."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .._association import Pairs
from .._codes import combine_keys, dense_rank, int_order, segment_bounds
from .._ops import blas_style_distances, connected_components, neighbour_pairs
from .loaders import SceneBoxes


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
class Problem:
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

    # What every class's counts read, computed once per problem (not once per class).
    @cached_property
    def gt_outside(self) -> np.ndarray:
        """Per ground-truth row: its object was never paired (always missed)."""
        return self.comp_of_obj[self.gt_obj] < 0

    @cached_property
    def pred_outside(self) -> np.ndarray:
        """Per prediction: its track was never paired (always a false positive)."""
        return self.comp_of_trk[self.hyp_trk] < 0 if len(self.hyp_trk) else np.zeros(0, bool)

    @cached_property
    def obj_class(self) -> np.ndarray:
        """Per object: its class (objects are keyed by class, scene and id)."""
        out = np.zeros(self.n_obj, np.int64)
        out[self.gt_obj] = self.gt.label
        return out


def build_problem(
    gt: SceneBoxes,
    pred: SceneBoxes,
    n_frames: int,
    dist_th: float,
    candidates: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Problem:
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
    return Problem(
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
