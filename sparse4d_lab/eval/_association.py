"""Frame-by-frame association of ground-truth objects and hypotheses, vectorised over independent problems.

Both sequential rules carried here (py-motmetrics and TrackEval CLEAR) depend on earlier frames only through
the matches an object has had. Two observations keep the Python loop short:

* a candidate pair whose ground truth and hypothesis have no other candidate in their frame is matched whatever
  happened before (it is the only option in its frame, and every rule takes it); such "simple" pairs are
  resolved at once, and the switch and fragmentation flags of all matches are derived afterwards from each
  object's matches in time order;
* the remaining pairs only interact through the objects and hypothesis tracks they involve, so the graph that
  links tracks sharing such a pair splits them into independent units. Step k of the loop treats the k-th
  contested frame of every unit at once, reading each object's state (last match: frame and track) from the
  simple matches and from the contested ones decided so far.

Per contested frame, stars and small components are solved by enumeration, the rest by
`scipy.optimize.linear_sum_assignment` (see `_ops.solve_assignment_groups`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._codes import combine_keys, int_order, segment_bounds
from ._ops import connected_components, solve_assignment_groups


@dataclass(frozen=True)
class Pairs:
    """Candidate (ground-truth row, hypothesis row) pairs of the same frame, with their distance."""

    gt: np.ndarray
    hyp: np.ndarray
    dist: np.ndarray

    def subset(self, mask: np.ndarray) -> Pairs:
        return Pairs(self.gt[mask], self.hyp[mask], self.dist[mask])


def _simple_pairs(pairs: Pairs, n_gt: int, n_hyp: int) -> np.ndarray:
    """Pairs whose ground-truth row and hypothesis row have no other candidate (rows belong to one frame)."""
    deg_g = np.bincount(pairs.gt, minlength=n_gt)
    deg_h = np.bincount(pairs.hyp, minlength=n_hyp)
    return (deg_g[pairs.gt] == 1) & (deg_h[pairs.hyp] == 1)


def _contested_steps(
    gt_obj: np.ndarray, hyp_trk: np.ndarray, time: np.ndarray, pairs: Pairs, idx: np.ndarray, n_obj: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contested pairs `idx` ordered by (step, frame, gt row, hyp row), with the bounds of each step."""
    g, h = pairs.gt[idx], pairs.hyp[idx]
    trk_codes, trk = np.unique(hyp_trk[h], return_inverse=True)
    labels = connected_components(n_obj, len(trk_codes), gt_obj[g], trk.reshape(-1))
    unit = labels[gt_obj[g]]
    t = time[g]
    unit_frame = combine_keys(unit, t)
    _, first, inverse = np.unique(unit_frame, return_index=True, return_inverse=True)
    u_start, u_end = segment_bounds(unit[first])
    local = np.arange(len(first)) - np.repeat(u_start, u_end - u_start)
    step = local[inverse.reshape(-1)]
    order = np.lexsort((h, g, unit_frame, step))
    starts, ends = segment_bounds(step[order])
    return idx[order], starts, ends


class _SimpleState:
    """Last simple match of an object strictly before a time (lookup by binary search)."""

    def __init__(self, obj: np.ndarray, time: np.ndarray, trk: np.ndarray) -> None:
        self.span = int(time.max()) + 2 if len(time) else 1
        key = obj * self.span + time
        order = np.argsort(key, kind="stable")
        self.key, self.obj, self.time, self.trk = key[order], obj[order], time[order], trk[order]

    def before(self, obj: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(time, track) of the last simple match of each object before `time`; (-1, -1) if none."""
        if len(self.key) == 0:
            return np.full(len(obj), -1, np.int64), np.full(len(obj), -1, np.int64)
        pos = np.searchsorted(self.key, obj * self.span + time, "left") - 1
        safe = np.maximum(pos, 0)
        ok = (pos >= 0) & (self.obj[safe] == obj)
        return np.where(ok, self.time[safe], -1), np.where(ok, self.trk[safe], -1)


def _simple_state(
    gt_obj: np.ndarray,
    time: np.ndarray,
    hyp_trk: np.ndarray,
    pairs: Pairs,
    s_idx: np.ndarray,
    c_idx: np.ndarray,
    n_obj: int,
) -> _SimpleState:
    """Simple matches of the objects that also have contested pairs (the only ones whose state is read)."""
    involved = np.zeros(n_obj, bool)
    involved[gt_obj[pairs.gt[c_idx]]] = True
    g = pairs.gt[s_idx]
    keep = involved[gt_obj[g]]
    return _SimpleState(gt_obj[g[keep]], time[g[keep]], hyp_trk[pairs.hyp[s_idx[keep]]])


def _match_simple_pairs(
    n_gt: int, n_hyp: int, gt_obj: np.ndarray, hyp_trk: np.ndarray, time: np.ndarray, pairs: Pairs, n_obj: int
) -> tuple[np.ndarray, _SimpleState | None, list[np.ndarray]]:
    """What both CLEAR replays share: a pair without a rival in its frame is matched outright; the contested pairs
    come back as the steps that decide them, in order, with the state of the outright matches they read.
    Returns (index of the pair matched by each ground-truth row or -1, that state, the contested pairs per step)."""
    gt_pair = np.full(n_gt, -1, np.int64)
    simple = _simple_pairs(pairs, n_gt, n_hyp)
    s_idx = np.flatnonzero(simple)
    gt_pair[pairs.gt[s_idx]] = s_idx
    c_idx = np.flatnonzero(~simple)
    if not c_idx.size:
        return gt_pair, None, []
    state = _simple_state(gt_obj, time, hyp_trk, pairs, s_idx, c_idx, n_obj)
    order, starts, ends = _contested_steps(gt_obj, hyp_trk, time, pairs, c_idx, n_obj)
    return gt_pair, state, [order[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)]


def _previous_match(
    gt_obj: np.ndarray, time: np.ndarray, trk: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For matched ground-truth `rows`: (time, track) of the object's previous match, (-1, -1) for the first."""
    order = int_order(gt_obj[rows], time[rows])
    o = gt_obj[rows][order]
    same = np.r_[False, o[1:] == o[:-1]]
    prev_time = np.full(len(rows), -1, np.int64)
    prev_trk = np.full(len(rows), -1, np.int64)
    prev_time[order[1:][same[1:]]] = time[rows][order[:-1]][same[1:]]
    prev_trk[order[1:][same[1:]]] = trk[order[:-1]][same[1:]]
    return prev_time, prev_trk


def associate_motmetrics(
    n_gt: int,
    n_hyp: int,
    gt_obj: np.ndarray,
    hyp_trk: np.ndarray,
    time: np.ndarray,
    pairs: Pairs,
    n_obj: int,
    switches: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """py-motmetrics' `MOTAccumulator.update`, replayed for all frames at once.

    Per frame: (1) an object keeps the hypothesis track it was last paired with (at any earlier frame) if it is
    present and within the gate; two objects claiming the same hypothesis: the earlier one in the frame wins;
    (2) the remaining candidates are assigned with maximum cardinality, then minimum total distance; a pairing
    that differs from the object's last one is a switch. `pairs` hold the candidates within the gate only;
    `time` orders the frames of a sequence (per ground-truth row), e.g. the frame index.
    Returns (index of the pair matched by each ground-truth row or -1, switch flag of each ground-truth row, or
    None without `switches`).
    """
    gt_pair, state, steps = _match_simple_pairs(n_gt, n_hyp, gt_obj, hyp_trk, time, pairs, n_obj)
    if steps:
        last_time = np.full(n_obj, -1, np.int64)
        last_trk = np.full(n_obj, -1, np.int64)
        hyp_taken = np.zeros(n_hyp, bool)
        for idx in steps:
            pg, ph = pairs.gt[idx], pairs.hyp[idx]
            obj, trk, t = gt_obj[pg], hyp_trk[ph], time[pg]
            s_time, s_trk = state.before(obj, t)
            prev = np.where(last_time[obj] > s_time, last_trk[obj], s_trk)
            cont = np.flatnonzero(prev == trk)
            if cont.size:
                _, first = np.unique(ph[cont], return_index=True)  # sorted by gt row: earliest object wins
                cont = cont[first]
                gt_pair[pg[cont]] = idx[cont]
                hyp_taken[ph[cont]] = True
            rest = np.flatnonzero((gt_pair[pg] < 0) & ~hyp_taken[ph])
            if rest.size:
                chosen = rest[
                    solve_assignment_groups(t[rest], pg[rest], ph[rest], pairs.dist[idx[rest]], maximize=False)
                ]
                gt_pair[pg[chosen]] = idx[chosen]
                hyp_taken[ph[chosen]] = True
            won = np.flatnonzero(gt_pair[pg] == idx)
            last_time[obj[won]] = t[won]
            last_trk[obj[won]] = trk[won]
    if not switches:
        return gt_pair, None
    matched = np.flatnonzero(gt_pair >= 0)
    trk = hyp_trk[pairs.hyp[gt_pair[matched]]]
    _, prev_trk = _previous_match(gt_obj, time, trk, matched)
    gt_switch = np.zeros(n_gt, bool)
    gt_switch[matched] = (prev_trk >= 0) & (prev_trk != trk)
    return gt_pair, gt_switch


def associate_trackeval_clear(
    n_gt: int,
    n_hyp: int,
    gt_obj: np.ndarray,
    hyp_trk: np.ndarray,
    frame: np.ndarray,
    prev_processed: np.ndarray,
    pairs: Pairs,
    similarity: np.ndarray,
    n_obj: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TrackEval's CLEAR matching, replayed for all frames at once.

    Per frame the score of a pair is its similarity plus 1000 if the object was matched to the same tracker id
    at the previous processed timestep of its sequence (a timestep with at least one ground truth and one
    tracker box; others are skipped and do not break continuity); the assignment maximises the total score.
    `pairs` hold the candidates with similarity >= threshold - eps; `frame` is the frame of each ground-truth
    row (frames numbered in time order) and `prev_processed` the previous processed frame of each frame.
    Returns (index of the matched pair or -1, identity switch flag, "starts a tracked stretch" flag) per gt row.
    """
    gt_pair, state, steps = _match_simple_pairs(n_gt, n_hyp, gt_obj, hyp_trk, frame, pairs, n_obj)
    if steps:
        last_frame = np.full(n_obj, -1, np.int64)
        last_trk = np.full(n_obj, -1, np.int64)
        for idx in steps:
            pg, ph = pairs.gt[idx], pairs.hyp[idx]
            obj, trk, f = gt_obj[pg], hyp_trk[ph], frame[pg]
            s_frame, s_trk = state.before(obj, f)
            later = last_frame[obj] > s_frame
            prev_f = np.where(later, last_frame[obj], s_frame)
            prev_t = np.where(later, last_trk[obj], s_trk)
            cont = (prev_f == prev_processed[f]) & (prev_t == trk)
            score = 1000 * cont + similarity[idx]
            chosen = np.flatnonzero(solve_assignment_groups(f, pg, ph, score, maximize=True))
            gt_pair[pg[chosen]] = idx[chosen]
            last_frame[obj[chosen]] = f[chosen]
            last_trk[obj[chosen]] = trk[chosen]
    matched = np.flatnonzero(gt_pair >= 0)
    trk = hyp_trk[pairs.hyp[gt_pair[matched]]]
    prev_frame, prev_trk = _previous_match(gt_obj, frame, trk, matched)
    idsw = np.zeros(n_gt, bool)
    idsw[matched] = (prev_trk >= 0) & (prev_trk != trk)
    starts_stretch = np.zeros(n_gt, bool)
    starts_stretch[matched] = prev_frame != prev_processed[frame[matched]]
    return gt_pair, idsw, starts_stretch


def _first_and_last(obj: np.ndarray, pos: np.ndarray, n_obj: int) -> tuple[np.ndarray, np.ndarray]:
    """Per object (rows sorted by object): its first and last position, -1 for an object without rows."""
    first, last = np.full(n_obj, -1, np.int64), np.full(n_obj, -1, np.int64)
    if len(obj):
        starts, ends = segment_bounds(obj)
        first[obj[starts]], last[obj[ends - 1]] = pos[starts], pos[ends - 1]
    return first, last


def object_event_stats(obj: np.ndarray, pos: np.ndarray, tracked: np.ndarray, n_obj: int) -> dict[str, np.ndarray]:
    """Per-object summaries of the events of every ground-truth occurrence.

    `pos` orders the occurrences of an object in time (frame index). Returns per object: `present`, `tracked`
    (occurrences matched), `frag` (runs of misses between the first and the last match), `first_pos`,
    `last_pos`, `first_tracked_pos` (-1 if never matched) and `longest_gap` (the longest stretch of positions
    between first and last occurrence without a match; 0 if never matched).
    """
    order = int_order(obj, pos)
    o, p, tr = obj[order], pos[order], tracked[order]
    present = np.bincount(o, minlength=n_obj)
    n_tracked = np.bincount(o, weights=tr, minlength=n_obj).astype(np.int64)
    first_pos, last_pos = _first_and_last(o, p, n_obj)
    idx = np.arange(len(o))
    last_tracked_idx = np.full(n_obj, -1, np.int64)
    np.maximum.at(last_tracked_idx, o[tr], idx[tr])
    same_prev = np.r_[False, o[1:] == o[:-1]]
    miss = ~tr
    run_start = miss & same_prev & np.r_[False, tr[:-1]]
    frag = np.bincount(o[run_start & (idx < last_tracked_idx[o])], minlength=n_obj)

    t_idx = np.flatnonzero(tr)
    to, tp = o[t_idx], p[t_idx]
    first_tracked, last_tracked = _first_and_last(to, tp, n_obj)
    gap = np.zeros(n_obj, np.int64)
    if len(to) > 1:
        inner = np.r_[to[1:] == to[:-1]]
        np.maximum.at(gap, to[1:][inner], (tp[1:] - tp[:-1] - 1)[inner])
    has = first_tracked >= 0
    gap[has] = np.maximum(gap[has], np.maximum(first_tracked[has] - first_pos[has], last_pos[has] - last_tracked[has]))
    return {
        "present": present,
        "tracked": n_tracked,
        "frag": frag,
        "first_pos": first_pos,
        "last_pos": last_pos,
        "first_tracked_pos": first_tracked,
        "longest_gap": gap,
    }


def id_global_matching(gt_track: np.ndarray, hyp_track: np.ndarray, n_gt_tracks: int, n_hyp_tracks: int) -> int:
    """Frames shared by a one-to-one matching of ground-truth and predicted ids maximising them (IDTP).

    Each argument pair is one frame in which the two tracks are within the gate of each other.
    """
    if len(gt_track) == 0:
        return 0
    _, first, counts = np.unique(combine_keys(gt_track, hyp_track), return_index=True, return_counts=True)
    g, h = gt_track[first], hyp_track[first]
    labels = connected_components(n_gt_tracks, n_hyp_tracks, g, h)
    chosen = solve_assignment_groups(labels[g], g, h, counts.astype(float), maximize=True)
    return int(counts[chosen].sum())
