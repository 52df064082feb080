"""Tracking metrics: CLEAR-MOT and IDF1 (py-motmetrics), HOTA (TrackEval), AMOTA (nuScenes) and ID stability.

Each family follows its reference implementation, including where they disagree, so each is reported under its
own names (py-motmetrics 1.4.0, TrackEval 1.0.0, nuscenes-devkit 1.2.0):

* py-motmetrics (`clear_mot`): candidates are pairs closer than the gate (2 m) on the floor plane. An object
  keeps the hypothesis it was last paired with, at any earlier frame, while it stays within the gate; the rest
  is assigned with maximum cardinality first and minimum distance second; a changed pairing is a switch.
  MOTA is not clipped; MOTP is the mean matched distance in metres; MT/PT/ML use tracked ratios >= 0.8 and
  < 0.2; a fragmentation is a run of misses between an object's first and last match. IDF1 comes from a global
  one-to-one matching of ids weighted by the frames they spend within the gate of each other.
* TrackEval (`trackeval_metrics`): similarity `max(0, 1 - d / zero_distance)` with zero_distance = 2 x gate
  (4 m), CLEAR and Identity gated at similarity >= 0.5 (distance <= 2 m). CLEAR continues only the pairings of
  the previous processed timestep (timesteps without ground truth or without tracker boxes are skipped, keeping
  continuity across them), counts a switch against the last matched id, MT above 0.8 (strict), Frag as tracked
  stretches minus one, and MOTP is a mean similarity. HOTA matches each frame by the global alignment score
  times the similarity and averages over alpha = 0.05 ... 0.95.
* ID stability (`id_stability`), on the py-motmetrics association: distinct predicted ids per ground-truth track,
  spurious tracks (predicted ids never matched), median track lengths.

Frames are given as `TrackingFrames` (any number of independent sequences; ids only need to be unique within a
frame of a sequence). Metrics over several sequences are combined as the libraries combine them: counts summed
and ratios recomputed (HOTA's association scores weighted by true positives).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ._association import (
    Pairs,
    associate_motmetrics,
    associate_trackeval_clear,
    object_event_stats,
)
from ._nuscenes_tracking import TrackingConfig, nuscenes_from_input, nuscenes_tracking
from ._ops import EPS, combine_keys, connected_components, neighbour_pairs, solve_assignment_groups
from .records import EvalInputError, TrackingInput, Tracks, as_tracks, encode_tracking, first_duplicate

HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)  # TrackEval's array_labels, floating-point values included


@dataclass(frozen=True)
class TrackingFrames:
    """Ground truth and hypotheses of one or more sequences on the floor plane, one row per box.

    frame_seq: [F] sequence of each frame (frames numbered 0..F-1, grouped by sequence, in time order);
    frame_key: [F] the physical frame each frame belongs to (several class-wise sequences share one frame);
    gt_frame/gt_id/gt_xy and hyp_frame/hyp_id/hyp_xy: frame index, track id and (x, y) of every box, in any frame
    order; the order of the boxes inside a frame breaks ties as in the reference libraries.
    Build it with `from_frame_lists`, `from_tracks` or `build`, which validate.
    """

    frame_seq: np.ndarray
    frame_key: np.ndarray
    gt_frame: np.ndarray
    gt_id: np.ndarray
    gt_xy: np.ndarray
    hyp_frame: np.ndarray
    hyp_id: np.ndarray
    hyp_xy: np.ndarray
    _pair_cache: dict[float, Pairs] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        frame_seq: Any,
        gt_frame: Any,
        gt_id: Any,
        gt_xy: Any,
        hyp_frame: Any,
        hyp_id: Any,
        hyp_xy: Any,
        frame_key: Any = None,
        check_ids: bool = True,
    ) -> TrackingFrames:
        """Check shapes, finiteness and (`check_ids`) that an id appears at most once per frame."""
        frame_seq = np.asarray(frame_seq, np.int64)
        if len(frame_seq) and np.any(np.diff(frame_seq) < 0):
            raise EvalInputError("frames must be grouped by sequence (frame_seq non-decreasing)")
        frame_key = np.arange(len(frame_seq)) if frame_key is None else np.asarray(frame_key, np.int64)
        parts = []
        for role, f, i, xy in (("ground truth", gt_frame, gt_id, gt_xy), ("hypothesis", hyp_frame, hyp_id, hyp_xy)):
            f = np.asarray(f, np.int64)
            i = np.asarray(i)
            xy = np.asarray(xy, float).reshape(len(f), 2)
            if len(i) != len(f):
                raise EvalInputError(f"{role}: {len(f)} frame indices but {len(i)} ids")
            if len(f) and (f.min() < 0 or f.max() >= len(frame_seq)):
                raise EvalInputError(f"{role}: frame index out of range 0..{len(frame_seq) - 1}")
            if not np.all(np.isfinite(xy)):
                row = int(np.flatnonzero(~np.all(np.isfinite(xy), axis=1))[0])
                raise EvalInputError(
                    f"{role} box {row} (frame {f[row]}) has a NaN or infinite coordinate; drop or repair it"
                )
            if check_ids and len(i):
                dup = first_duplicate(f, np.unique(i, return_inverse=True)[1].reshape(-1))
                if dup is not None:
                    raise EvalInputError(
                        f"{role}: id {i[dup[0]].item()!r} appears twice in frame {f[dup[0]]}; "
                        "each track id may appear once per frame"
                    )
            parts += [f, i, xy]
        return cls(frame_seq, frame_key, *parts)

    @classmethod
    def from_frame_lists(cls, frames: Sequence[Mapping[str, Any]]) -> TrackingFrames:
        """One sequence from `[{"gt": [[id, x, y], ...], "hyp": [[id, x, y], ...]}, ...]` (one entry per frame)."""
        cols: dict[str, list[Any]] = {"gt": [], "hyp": []}
        for k, fr in enumerate(frames):
            for role in ("gt", "hyp"):
                if role not in fr:
                    raise EvalInputError(f"frame {k} has no '{role}' list; each frame needs 'gt' and 'hyp'")
                for row in fr[role]:
                    if len(row) != 3:
                        raise EvalInputError(f"frame {k}: {role} entry {row!r} is not [id, x, y]")
                    cols[role].append((k, row[0], row[1], row[2]))

        def split(rows: list[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if not rows:
                return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 2))
            f, i, x, y = zip(*rows, strict=True)
            return np.asarray(f), np.asarray(i), np.stack([np.asarray(x, float), np.asarray(y, float)], axis=1)

        return cls.build(np.zeros(len(frames), np.int64), *split(cols["gt"]), *split(cols["hyp"]))

    @classmethod
    def from_tracks(
        cls, gt: Tracks | TrackingInput, pred: Tracks | None = None, classes: Sequence[Any] | None = None
    ) -> TrackingFrames:
        """Class-aware sequences, one per (scene, class), from tracking arrays (or an encoded input).

        The frames of a scene are the distinct `t` of its ground truth and predictions; every class sequence of
        the scene holds all of them. `frame_key` identifies the (scene, t) frame.
        """
        inp = gt if isinstance(gt, TrackingInput) else encode_tracking(gt, pred, classes)
        n_cls, n_frames = len(inp.classes), len(inp.frame_scene)
        scene_len = np.bincount(inp.frame_scene)
        scene_start = np.cumsum(scene_len) - scene_len

        def seq_frame(frame: np.ndarray, label: np.ndarray) -> np.ndarray:
            """Index of physical frame `frame` in the sequence of class `label` (sequences by scene, class)."""
            s = inp.frame_scene[frame]
            return scene_start[s] * n_cls + label * scene_len[s] + (frame - scene_start[s])

        phys = np.repeat(np.arange(n_frames), n_cls)
        label = np.tile(np.arange(n_cls), n_frames)
        index = seq_frame(phys, label)
        frame_seq = np.empty(len(index), np.int64)
        frame_seq[index] = inp.frame_scene[phys] * n_cls + label
        frame_key = np.empty(len(index), np.int64)
        frame_key[index] = phys
        return cls.build(
            frame_seq,
            seq_frame(inp.gt.frame, inp.gt.label),
            inp.gt.track,
            inp.gt.xy,
            seq_frame(inp.pred.frame, inp.pred.label),
            inp.pred.track,
            inp.pred.xy,
            frame_key=frame_key,
            check_ids=False,
        )

    @property
    def num_frames(self) -> int:
        """Number of distinct physical frames."""
        return len(np.unique(self.frame_key))

    @cached_property
    def gt_track(self) -> np.ndarray:
        """Dense index of the ground-truth track (sequence, id) of every row."""
        return _track_codes(self.frame_seq[self.gt_frame], self.gt_id)

    @cached_property
    def hyp_track(self) -> np.ndarray:
        """Dense index of the hypothesis track (sequence, id) of every row."""
        return _track_codes(self.frame_seq[self.hyp_frame], self.hyp_id)

    @property
    def n_gt_tracks(self) -> int:
        return int(self.gt_track.max()) + 1 if len(self.gt_track) else 0

    @property
    def n_hyp_tracks(self) -> int:
        return int(self.hyp_track.max()) + 1 if len(self.hyp_track) else 0

    def adopt_pairs(self, radius: float, pairs: Pairs) -> None:
        """Take every same-frame pair at most `radius` apart from a search made elsewhere (rows of this object)."""
        self._pair_cache[radius] = pairs

    def pairs_within(self, radius: float) -> Pairs:
        """All same-frame (ground truth, hypothesis) pairs at most `radius` apart (cached: several metrics ask)."""
        larger = [r for r in self._pair_cache if r >= radius]
        if larger:
            pairs = self._pair_cache[min(larger)]
            return pairs.subset(pairs.dist <= radius)
        ig, ih, d = neighbour_pairs(self.gt_frame, self.gt_xy, self.hyp_frame, self.hyp_xy, radius)
        self._pair_cache[radius] = Pairs(ig, ih, d)
        return self._pair_cache[radius]


def _track_codes(seq: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    _, id_codes = np.unique(ids, return_inverse=True)
    keys = combine_keys(seq, id_codes.reshape(-1))
    return np.unique(keys, return_inverse=True)[1].reshape(-1).astype(np.int64)


def _div(a: float, b: float) -> float:
    """py-motmetrics' quiet_divide: a / b with NaN for 0 / 0 and inf for x / 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(float(a), float(b)))


# ----------------------------------------------------------------------------------------------------------------
# py-motmetrics: CLEAR-MOT and IDF1
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClearEvents:
    """Outcome of the py-motmetrics association: per ground-truth row its hypothesis row (-1: miss) and switch."""

    frames: TrackingFrames
    gate: float
    pairs: Pairs
    gt_match: np.ndarray
    gt_switch: np.ndarray
    gt_dist: np.ndarray


def associate_clear(frames: TrackingFrames, gate: float = 2.0) -> ClearEvents:
    """Run the py-motmetrics association on every sequence (pairs at distance >= gate never match)."""
    pairs = frames.pairs_within(gate)
    pairs = pairs.subset(pairs.dist < gate)
    gt_pair, gt_switch = associate_motmetrics(
        len(frames.gt_frame),
        len(frames.hyp_frame),
        frames.gt_track,
        frames.hyp_track,
        frames.gt_frame,
        pairs,
        frames.n_gt_tracks,
    )
    matched = gt_pair >= 0
    safe = np.maximum(gt_pair, 0)
    if len(pairs.gt):
        gt_match, gt_dist = np.where(matched, pairs.hyp[safe], -1), np.where(matched, pairs.dist[safe], np.nan)
    else:
        gt_match, gt_dist = np.full(len(gt_pair), -1), np.full(len(gt_pair), np.nan)
    return ClearEvents(frames, gate, pairs, gt_match, gt_switch, gt_dist)


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


def clear_summary(events: ClearEvents) -> dict[str, float]:
    """CLEAR-MOT and identity figures under py-motmetrics' names from the association outcome."""
    fr = events.frames
    matched = events.gt_match >= 0
    n_obj = len(matched)
    n_pred = len(fr.hyp_frame)
    num_switches = int(events.gt_switch.sum())
    num_detections = int(matched.sum())
    num_matches = num_detections - num_switches
    num_misses = n_obj - num_detections
    num_fp = n_pred - num_detections
    stats = object_event_stats(fr.gt_track, fr.gt_frame, matched, fr.n_gt_tracks)
    present = stats["present"]
    ratio = np.divide(stats["tracked"], present, out=np.zeros(len(present)), where=present > 0)
    ratio = ratio[present > 0]
    idtp = id_global_matching(
        fr.gt_track[events.pairs.gt], fr.hyp_track[events.pairs.hyp], fr.n_gt_tracks, fr.n_hyp_tracks
    )
    idfn, idfp = n_obj - idtp, n_pred - idtp
    return {
        "mota": 1.0 - _div(num_misses + num_switches + num_fp, n_obj),
        "motp": _div(float(np.sum(events.gt_dist[matched])), num_detections),
        "idf1": _div(2 * idtp, n_obj + n_pred),
        "idp": _div(idtp, idtp + idfp),
        "idr": _div(idtp, idtp + idfn),
        "idtp": float(idtp),
        "idfp": float(idfp),
        "idfn": float(idfn),
        "num_switches": num_switches,
        "num_fragmentations": int(stats["frag"].sum()),
        "num_false_positives": num_fp,
        "num_misses": num_misses,
        "num_matches": num_matches,
        "num_detections": num_detections,
        "num_objects": n_obj,
        "num_predictions": n_pred,
        "num_unique_objects": int(np.sum(present > 0)),
        "mostly_tracked": int(np.sum(ratio >= 0.8)),
        "partially_tracked": int(np.sum((ratio >= 0.2) & (ratio < 0.8))),
        "mostly_lost": int(np.sum(ratio < 0.2)),
        "num_frames": fr.num_frames,
        "precision": _div(num_detections, num_fp + num_detections),
        "recall": _div(num_detections, n_obj),
    }


def clear_mot(frames: TrackingFrames | Sequence[Mapping[str, Any]], gate: float = 2.0) -> dict[str, float]:
    """CLEAR-MOT (MOTA, MOTP, switches, fragmentations, MT/PT/ML) and IDF1 with py-motmetrics' semantics."""
    frames = frames if isinstance(frames, TrackingFrames) else TrackingFrames.from_frame_lists(frames)
    return clear_summary(associate_clear(frames, gate))


# ----------------------------------------------------------------------------------------------------------------
# ID stability
# ----------------------------------------------------------------------------------------------------------------


def id_stability_summary(events: ClearEvents) -> dict[str, float]:
    """How stable predicted ids are, on the py-motmetrics association.

    `ids_per_gt_track`: mean number of distinct predicted ids matched to a ground-truth track (tracks matched at
    least once; 1 is ideal); `gt_tracks_with_id_change`: tracks matched to more than one id; `spurious_tracks`:
    predicted ids never matched to any ground truth (and their share of all predicted ids); track lengths are
    numbers of boxes per id.
    """
    fr = events.frames
    m = np.flatnonzero(events.gt_match >= 0)
    g, h = fr.gt_track[m], fr.hyp_track[events.gt_match[m]]
    if m.size:
        first = np.unique(combine_keys(g, h), return_index=True)[1]
        ids_per_track = np.bincount(g[first], minlength=fr.n_gt_tracks)
    else:
        ids_per_track = np.zeros(fr.n_gt_tracks, np.int64)
    matched_tracks = ids_per_track[ids_per_track > 0]
    n_pred_tracks = fr.n_hyp_tracks
    hyp_matched = np.zeros(n_pred_tracks, bool)
    hyp_matched[h] = True
    pred_len = np.bincount(fr.hyp_track, minlength=n_pred_tracks)
    gt_len = np.bincount(fr.gt_track, minlength=fr.n_gt_tracks)
    spurious = int(np.sum(~hyp_matched))
    return {
        "num_gt_tracks": fr.n_gt_tracks,
        "num_pred_tracks": n_pred_tracks,
        "ids_per_gt_track": float(matched_tracks.mean()) if matched_tracks.size else float("nan"),
        "max_ids_per_gt_track": int(matched_tracks.max()) if matched_tracks.size else 0,
        "gt_tracks_with_id_change": int(np.sum(matched_tracks > 1)),
        "spurious_tracks": spurious,
        "spurious_track_share": _div(spurious, n_pred_tracks),
        "median_pred_track_length": float(np.median(pred_len)) if n_pred_tracks else float("nan"),
        "median_gt_track_length": float(np.median(gt_len)) if fr.n_gt_tracks else float("nan"),
    }


def id_stability(frames: TrackingFrames | Sequence[Mapping[str, Any]], gate: float = 2.0) -> dict[str, float]:
    """ID stability figures (see `id_stability_summary`)."""
    frames = frames if isinstance(frames, TrackingFrames) else TrackingFrames.from_frame_lists(frames)
    return id_stability_summary(associate_clear(frames, gate))


# ----------------------------------------------------------------------------------------------------------------
# TrackEval: HOTA, CLEAR, Identity
# ----------------------------------------------------------------------------------------------------------------


def similarity_of(dist: np.ndarray, zero_distance: float) -> np.ndarray:
    """TrackEval-style similarity of a centre distance: 1 at 0, falling linearly to 0 at `zero_distance`."""
    return np.maximum(0.0, 1.0 - dist / zero_distance)


def hota_per_sequence(frames: TrackingFrames, zero_distance: float = 4.0) -> dict[str, np.ndarray]:
    """TrackEval's HOTA sums per sequence: HOTA_TP/FN/FP, LocA, AssA, AssRe, AssPr, each [S, 19 alphas]."""
    n_seq = int(frames.frame_seq.max()) + 1 if len(frames.frame_seq) else 0
    n_a = len(HOTA_ALPHAS)
    gt_seq = frames.frame_seq[frames.gt_frame]
    hyp_seq = frames.frame_seq[frames.hyp_frame]
    n_gt_dets = np.bincount(gt_seq, minlength=n_seq).astype(float)
    n_hyp_dets = np.bincount(hyp_seq, minlength=n_seq).astype(float)
    gt_tr, hyp_tr = frames.gt_track, frames.hyp_track
    gt_count = np.bincount(gt_tr, minlength=frames.n_gt_tracks).astype(float)
    hyp_count = np.bincount(hyp_tr, minlength=frames.n_hyp_tracks).astype(float)

    pairs = frames.pairs_within(zero_distance)
    sim = similarity_of(pairs.dist, zero_distance)
    pairs, sim = pairs.subset(sim > 0), sim[sim > 0]
    # Potential matches: similarity normalised like an IoU within the frame, summed over frames per id pair.
    row_sum = np.bincount(pairs.gt, weights=sim, minlength=len(gt_tr))
    col_sum = np.bincount(pairs.hyp, weights=sim, minlength=len(hyp_tr))
    denom = row_sum[pairs.gt] + col_sum[pairs.hyp] - sim
    sim_iou = np.where(denom > 0 + EPS, sim / np.where(denom > 0 + EPS, denom, 1.0), 0.0)
    g_tr, h_tr = gt_tr[pairs.gt], hyp_tr[pairs.hyp]
    id_key = combine_keys(g_tr, h_tr)
    uniq_key, key_of_pair = np.unique(id_key, return_inverse=True)
    key_of_pair = key_of_pair.reshape(-1)
    potential = np.bincount(key_of_pair, weights=sim_iou, minlength=len(uniq_key))
    first = np.unique(key_of_pair, return_index=True)[1]
    k_g, k_h = g_tr[first], h_tr[first]
    alignment = potential / (gt_count[k_g] + hyp_count[k_h] - potential)
    score = alignment[key_of_pair] * sim
    chosen = solve_assignment_groups(frames.gt_frame[pairs.gt], pairs.gt, pairs.hyp, score, maximize=True)

    m_sim, m_key = sim[chosen], key_of_pair[chosen]
    m_seq = gt_seq[pairs.gt[chosen]]
    # A match counts for the alphas its similarity reaches: alpha index < level.
    level = np.searchsorted(HOTA_ALPHAS - EPS, m_sim, side="right")

    def per_alpha(group: np.ndarray, n_group: int, weights: np.ndarray | None = None) -> np.ndarray:
        """[n_group, alphas]: summed weights of the matches of each group reaching each alpha."""
        hist = np.bincount(group * (n_a + 1) + level, weights=weights, minlength=n_group * (n_a + 1))
        hist = hist.reshape(n_group, n_a + 1)
        return np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]

    tp = per_alpha(m_seq, n_seq)
    loc = per_alpha(m_seq, n_seq, m_sim)
    km, k_idx = np.unique(m_key, return_inverse=True)
    k_idx = k_idx.reshape(-1)
    mc = per_alpha(k_idx, len(km))  # matches per id pair and alpha
    mg, mh = k_g[km], k_h[km]
    k_seq = np.zeros(len(km), np.int64)
    k_seq[k_idx] = m_seq
    gt_c, hyp_c = gt_count[mg][:, None], hyp_count[mh][:, None]
    out = {"HOTA_TP": tp, "HOTA_FN": n_gt_dets[:, None] - tp, "HOTA_FP": n_hyp_dets[:, None] - tp}
    for name, val in (
        ("AssA", mc / np.maximum(1, gt_c + hyp_c - mc)),
        ("AssRe", mc / np.maximum(1, gt_c)),
        ("AssPr", mc / np.maximum(1, hyp_c)),
    ):
        summed = np.zeros((n_seq, n_a))
        np.add.at(summed, k_seq, mc * val)
        out[name] = summed / np.maximum(1, tp)
    out["LocA"] = np.maximum(1e-10, loc) / np.maximum(1e-10, tp)
    return out


def hota_combine(per_seq: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """TrackEval's `combine_sequences` and `_compute_final_fields` for HOTA (arrays over alpha)."""
    res: dict[str, Any] = {f: per_seq[f].sum(axis=0) for f in ("HOTA_TP", "HOTA_FN", "HOTA_FP")}
    for f in ("AssRe", "AssPr", "AssA"):
        res[f] = (per_seq[f] * per_seq["HOTA_TP"]).sum(axis=0) / np.maximum(1.0, res["HOTA_TP"])
    loca_weighted = (per_seq["LocA"] * per_seq["HOTA_TP"]).sum(axis=0)
    res["LocA"] = np.maximum(1e-10, loca_weighted) / np.maximum(1e-10, res["HOTA_TP"])
    res["DetRe"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FN"])
    res["DetPr"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FP"])
    res["DetA"] = res["HOTA_TP"] / np.maximum(1, res["HOTA_TP"] + res["HOTA_FN"] + res["HOTA_FP"])
    res["HOTA"] = np.sqrt(res["DetA"] * res["AssA"])
    res["OWTA"] = np.sqrt(res["DetRe"] * res["AssA"])
    res["HOTA(0)"] = float(res["HOTA"][0])
    res["LocA(0)"] = float(res["LocA"][0])
    res["HOTALocA(0)"] = res["HOTA(0)"] * res["LocA(0)"]
    return res


def trackeval_clear(frames: TrackingFrames, zero_distance: float = 4.0, threshold: float = 0.5) -> dict[str, float]:
    """TrackEval's CLEAR metrics (summed over sequences, final fields recomputed)."""
    pairs = frames.pairs_within(zero_distance * (1.0 - threshold) * (1 + 1e-9) + 1e-12)
    sim = similarity_of(pairs.dist, zero_distance)
    keep = sim >= threshold - EPS
    pairs, sim = pairs.subset(keep), sim[keep]
    n_gt = len(frames.gt_frame)
    # Processed timesteps: at least one ground truth and one tracker box; each one's predecessor in its sequence.
    n_f = len(frames.frame_seq)
    processed = (np.bincount(frames.gt_frame, minlength=n_f) > 0) & (np.bincount(frames.hyp_frame, minlength=n_f) > 0)
    prev_processed = np.full(n_f, -2, np.int64)
    proc = np.flatnonzero(processed)
    if proc.size > 1:
        same = frames.frame_seq[proc[1:]] == frames.frame_seq[proc[:-1]]
        prev_processed[proc[1:][same]] = proc[:-1][same]
    gt_pair, idsw, starts = associate_trackeval_clear(
        n_gt,
        len(frames.hyp_frame),
        frames.gt_track,
        frames.hyp_track,
        frames.gt_frame,
        prev_processed,
        pairs,
        sim,
        frames.n_gt_tracks,
    )
    matched = gt_pair >= 0
    motp_sum = float(np.sum(sim[gt_pair[matched]]))
    tr = frames.gt_track
    count = np.bincount(tr, minlength=frames.n_gt_tracks).astype(float)
    n_matched = np.bincount(tr, weights=matched, minlength=frames.n_gt_tracks)
    n_starts = np.bincount(tr[starts], minlength=frames.n_gt_tracks)
    present = count > 0
    ratio = n_matched[present] / count[present]
    res = {
        "CLR_TP": float(matched.sum()),
        "CLR_FN": float(n_gt - matched.sum()),
        "CLR_FP": float(len(frames.hyp_frame) - matched.sum()),
        "IDSW": float(idsw.sum()),
        "MT": float(np.sum(ratio > 0.8)),
        "PT": float(np.sum(ratio >= 0.2) - np.sum(ratio > 0.8)),
        "Frag": float(np.sum(n_starts[n_starts > 0] - 1)),
        "MOTP_sum": motp_sum,
        "CLR_Frames": float(frames.num_frames),
    }
    res["ML"] = float(frames.n_gt_tracks) - res["MT"] - res["PT"]
    tp, fn, fp, idsw_ = res["CLR_TP"], res["CLR_FN"], res["CLR_FP"], res["IDSW"]
    n_ids = res["MT"] + res["ML"] + res["PT"]
    res.update(
        {
            "MTR": res["MT"] / max(1.0, n_ids),
            "MLR": res["ML"] / max(1.0, n_ids),
            "PTR": res["PT"] / max(1.0, n_ids),
            "CLR_Re": tp / max(1.0, tp + fn),
            "CLR_Pr": tp / max(1.0, tp + fp),
            "MODA": (tp - fp) / max(1.0, tp + fn),
            "MOTA": (tp - fp - idsw_) / max(1.0, tp + fn),
            "MOTP": motp_sum / max(1.0, tp),
            "sMOTA": (motp_sum - fp - idsw_) / max(1.0, tp + fn),
            "CLR_F1": tp / max(1.0, tp + 0.5 * fn + 0.5 * fp),
            "FP_per_frame": fp / max(1.0, res["CLR_Frames"]),
        }
    )
    return res


def trackeval_identity(frames: TrackingFrames, zero_distance: float = 4.0, threshold: float = 0.5) -> dict[str, float]:
    """TrackEval's Identity metrics (IDF1, IDP, IDR and counts): pairs count when similarity >= threshold."""
    pairs = frames.pairs_within(zero_distance * (1.0 - threshold) * (1 + 1e-9) + 1e-12)
    pairs = pairs.subset(similarity_of(pairs.dist, zero_distance) >= threshold)
    idtp = float(
        id_global_matching(
            frames.gt_track[pairs.gt], frames.hyp_track[pairs.hyp], frames.n_gt_tracks, frames.n_hyp_tracks
        )
    )
    idfn = float(len(frames.gt_frame)) - idtp
    idfp = float(len(frames.hyp_frame)) - idtp
    return {
        "IDF1": idtp / max(1.0, idtp + 0.5 * idfp + 0.5 * idfn),
        "IDR": idtp / max(1.0, idtp + idfn),
        "IDP": idtp / max(1.0, idtp + idfp),
        "IDTP": idtp,
        "IDFN": idfn,
        "IDFP": idfp,
    }


def trackeval_metrics(
    frames: TrackingFrames | Sequence[Mapping[str, Any]], zero_distance: float = 4.0, threshold: float = 0.5
) -> dict[str, float]:
    """HOTA, CLEAR and Identity with TrackEval's semantics and names (array fields averaged over alpha)."""
    frames = frames if isinstance(frames, TrackingFrames) else TrackingFrames.from_frame_lists(frames)
    hota = hota_combine(hota_per_sequence(frames, zero_distance))
    out: dict[str, float] = {}
    for f in ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA", "OWTA"):
        out[f] = float(np.mean(hota[f]))
    for f in ("HOTA(0)", "LocA(0)", "HOTALocA(0)"):
        out[f] = float(hota[f])
    out.update(trackeval_clear(frames, zero_distance, threshold))
    out.update(trackeval_identity(frames, zero_distance, threshold))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Records -> all families
# ----------------------------------------------------------------------------------------------------------------


def evaluate_tracking(
    gt: Tracks | Sequence[Mapping[str, Any]],
    pred: Tracks | Sequence[Mapping[str, Any]],
    *,
    classes: Iterable[Any] | None = None,
    min_score: float | None = None,
    gate: float = 2.0,
) -> dict[str, dict[str, Any]]:
    """Every tracking figure of `pred` against `gt`, one block per semantics.

    `clear` (py-motmetrics names), `hota` (TrackEval names: HOTA, DetA, AssA, LocA and TrackEval's CLEAR and
    Identity), `nuscenes` (devkit names: amota, amotp, motar, ..., with `per_class`) and `id_stability`.
    CLEAR, IDF1, HOTA and ID stability use every prediction (after dropping scores below `min_score`), per
    (scene, class) sequence, combined over sequences; AMOTA/AMOTP sweep score thresholds as the devkit does and
    ignore `min_score`. `num_frames` counts distinct (scene, t) frames.
    """
    gt = as_tracks(gt, "ground truth", gt=True)
    pred = as_tracks(pred, "prediction", gt=False)
    if len(gt) == 0:
        raise EvalInputError("the ground truth holds no boxes: there is nothing to evaluate against")
    inp = encode_tracking(gt, pred, classes)
    nuscenes = nuscenes_from_input(
        inp, TrackingConfig(classes=tuple(inp.classes), dist_th_tp=gate), share_radius=2.0 * gate
    )
    g, h, d = nuscenes.pop("_pairs")
    kept = np.arange(len(inp.pred.frame)) if min_score is None else np.flatnonzero(inp.pred.score >= min_score)
    frames = TrackingFrames.from_tracks(
        TrackingInput(inp.gt, inp.pred.select(kept), inp.classes, inp.frame_scene, inp.frame_time)
    )
    frame_row = np.full(len(inp.pred.frame), -1, np.int64)
    frame_row[kept] = np.arange(len(kept))
    use = frame_row[h] >= 0
    # The same boxes, grouped by class and frame in both: the wide search serves HOTA and the gated metrics.
    frames.adopt_pairs(2.0 * gate, Pairs(g[use], frame_row[h[use]], d[use]))
    events = associate_clear(frames, gate)
    return {
        "clear": clear_summary(events),
        "hota": trackeval_metrics(frames, zero_distance=2.0 * gate, threshold=0.5),
        "nuscenes": nuscenes,
        "id_stability": id_stability_summary(events),
    }


__all__ = [
    "HOTA_ALPHAS",
    "ClearEvents",
    "TrackingConfig",
    "TrackingFrames",
    "associate_clear",
    "clear_mot",
    "clear_summary",
    "evaluate_tracking",
    "hota_combine",
    "hota_per_sequence",
    "id_global_matching",
    "id_stability",
    "id_stability_summary",
    "nuscenes_tracking",
    "similarity_of",
    "trackeval_clear",
    "trackeval_identity",
    "trackeval_metrics",
]
