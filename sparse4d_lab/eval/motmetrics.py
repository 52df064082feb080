"""py-motmetrics (1.4.0): CLEAR-MOT and IDF1, and the ID stability figures read off the same association.

Candidates are pairs closer than the gate (2 m) on the floor plane. An object keeps the hypothesis it was last
paired with, at any earlier frame, while it stays within the gate; the rest is assigned with maximum cardinality
first and minimum distance second; a changed pairing is a switch. MOTA is not clipped; MOTP is the mean matched
distance in metres; MT/PT/ML use tracked ratios >= 0.8 and < 0.2; a fragmentation is a run of misses between an
object's first and last match. IDF1 comes from a global one-to-one matching of ids weighted by the frames they
spend within the gate of each other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._association import Pairs, associate_motmetrics, id_global_matching, object_event_stats
from ._codes import combine_keys
from .tracking_frames import TrackingFrames


def _div(a: float, b: float) -> float:
    """py-motmetrics' quiet_divide: a / b with NaN for 0 / 0 and inf for x / 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.divide(float(a), float(b)))


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


def clear_summary(events: ClearEvents) -> dict[str, float]:
    """CLEAR-MOT and identity figures under py-motmetrics' names from the association outcome."""
    frames = events.frames
    matched = events.gt_match >= 0
    n_obj = len(matched)
    n_pred = len(frames.hyp_frame)
    num_switches = int(events.gt_switch.sum())
    num_detections = int(matched.sum())
    num_matches = num_detections - num_switches
    num_misses = n_obj - num_detections
    num_fp = n_pred - num_detections
    stats = object_event_stats(frames.gt_track, frames.gt_frame, matched, frames.n_gt_tracks)
    present = stats["present"]
    ratio = np.divide(stats["tracked"], present, out=np.zeros(len(present)), where=present > 0)
    ratio = ratio[present > 0]
    idtp = id_global_matching(
        frames.gt_track[events.pairs.gt], frames.hyp_track[events.pairs.hyp], frames.n_gt_tracks, frames.n_hyp_tracks
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
        "num_frames": frames.num_frames,
        "precision": _div(num_detections, num_fp + num_detections),
        "recall": _div(num_detections, n_obj),
    }


def clear_mot(frames: TrackingFrames | Sequence[Mapping[str, Any]], gate: float = 2.0) -> dict[str, float]:
    """CLEAR-MOT (MOTA, MOTP, switches, fragmentations, MT/PT/ML) and IDF1 with py-motmetrics' semantics."""
    frames = frames if isinstance(frames, TrackingFrames) else TrackingFrames.from_frame_lists(frames)
    return clear_summary(associate_clear(frames, gate))


def id_stability_summary(events: ClearEvents) -> dict[str, float]:
    """How stable predicted ids are, on the py-motmetrics association.

    `ids_per_gt_track`: mean number of distinct predicted ids matched to a ground-truth track (tracks matched at
    least once; 1 is ideal); `gt_tracks_with_id_change`: tracks matched to more than one id; `spurious_tracks`:
    predicted ids never matched to any ground truth (and their share of all predicted ids); track lengths are
    numbers of boxes per id.
    """
    frames = events.frames
    rows = np.flatnonzero(events.gt_match >= 0)  # matched ground-truth boxes
    g, h = frames.gt_track[rows], frames.hyp_track[events.gt_match[rows]]
    if rows.size:
        first = np.unique(combine_keys(g, h), return_index=True)[1]
        ids_per_track = np.bincount(g[first], minlength=frames.n_gt_tracks)
    else:
        ids_per_track = np.zeros(frames.n_gt_tracks, np.int64)
    matched_tracks = ids_per_track[ids_per_track > 0]
    n_pred_tracks = frames.n_hyp_tracks
    hyp_matched = np.zeros(n_pred_tracks, bool)
    hyp_matched[h] = True
    pred_len = np.bincount(frames.hyp_track, minlength=n_pred_tracks)
    gt_len = np.bincount(frames.gt_track, minlength=frames.n_gt_tracks)
    spurious = int(np.sum(~hyp_matched))
    return {
        "num_gt_tracks": frames.n_gt_tracks,
        "num_pred_tracks": n_pred_tracks,
        "ids_per_gt_track": float(matched_tracks.mean()) if matched_tracks.size else float("nan"),
        "max_ids_per_gt_track": int(matched_tracks.max()) if matched_tracks.size else 0,
        "gt_tracks_with_id_change": int(np.sum(matched_tracks > 1)),
        "spurious_tracks": spurious,
        "spurious_track_share": _div(spurious, n_pred_tracks),
        "median_pred_track_length": float(np.median(pred_len)) if n_pred_tracks else float("nan"),
        "median_gt_track_length": float(np.median(gt_len)) if frames.n_gt_tracks else float("nan"),
    }


def id_stability(frames: TrackingFrames | Sequence[Mapping[str, Any]], gate: float = 2.0) -> dict[str, float]:
    """ID stability figures (see `id_stability_summary`)."""
    frames = frames if isinstance(frames, TrackingFrames) else TrackingFrames.from_frame_lists(frames)
    return id_stability_summary(associate_clear(frames, gate))
