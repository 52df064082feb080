"""Scenarios (a component with the predictions above a cut-off) replayed with py-motmetrics' association, and
their event counts: what the devkit's frame loop counts at each score threshold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._association import Pairs, associate_motmetrics
from .._codes import combine_keys, dense_rank, int_order, segment_bounds
from .metrics import STAT_NAMES
from .problem import AtLeast, Layout, Problem


@dataclass(frozen=True)
class Matches:
    """Matched ground-truth rows of a set of scenarios (a component with the predictions above a cut-off)."""

    scen: np.ndarray
    gt_row: np.ndarray
    hyp_row: np.ndarray
    dist: np.ndarray
    src_pair: np.ndarray  # the problem's pair of each match

    def subset(self, mask: np.ndarray, scen: np.ndarray | None = None) -> Matches:
        return Matches(
            self.scen[mask] if scen is None else scen,
            self.gt_row[mask],
            self.hyp_row[mask],
            self.dist[mask],
            self.src_pair[mask],
        )

    @staticmethod
    def concat(parts: list[Matches]) -> Matches:
        return Matches(
            *(np.concatenate([getattr(m, f) for m in parts]) for f in ("scen", "gt_row", "hyp_row", "dist", "src_pair"))
        )


def replay(p: Problem, scen_comp: np.ndarray, scen_cut: np.ndarray) -> Matches:
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
        return Matches(p.comp_of_obj[p.gt_obj[m]], m, p.pairs.hyp[k], p.pairs.dist[k], k)
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
    return Matches(g_scen[m], g_rows[m], h_rows[pairs.hyp[k]], pairs.dist[k], src[k])


def restrict(p: Problem, full: Matches, scen_comp: np.ndarray, scen_cut: np.ndarray) -> Matches:
    """Scenarios of uncontested components: every candidate pair is matched, so keep the full run's matches
    whose prediction scores >= the cut-off."""
    layout = Layout(p.comp_of_obj[p.gt_obj[full.gt_row]], p.n_comp)
    idx, scen, _ = layout.copies(scen_comp)
    keep = p.pred.score[full.hyp_row[idx]] >= scen_cut[scen]
    return full.subset(idx[keep], scen[keep])


def match_sequences(p: Problem, m: Matches) -> dict[str, np.ndarray]:
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


def scenario_stats(
    p: Problem, m: Matches, scen_comp: np.ndarray, scen_cut: np.ndarray, q: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """Summed counts [n_scen, len(STAT_NAMES)] of each scenario; objects with holes leave out TID and LGD.

    `q` may hold `match_sequences(p, m)` when already computed."""
    n_scen = len(scen_comp)
    q = match_sequences(p, m) if q is None else q
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


def holey_tid_lgd(
    p: Problem, m: Matches, scen_of_comp: np.ndarray, objs: np.ndarray, nonempty: np.ndarray
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
class OrderSensitive:
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
    def of(cls, p: Problem, m: Matches, n_frames: int, counter: AtLeast) -> OrderSensitive:
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

    def correction(self, m: Matches, scen_of_comp: np.ndarray, thr: float) -> float:
        """Change of the summed matched distance when measured with the kernel this threshold implies."""
        sel = (thr > self.second) & (thr <= self.top)
        if not sel.any():
            return 0.0
        sel &= m.scen[self.rows] == scen_of_comp[self.comp]
        return float(np.sum(self.delta[sel]))
