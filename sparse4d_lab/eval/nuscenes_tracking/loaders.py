"""The devkit's `loaders.create_tracks`: a predicted track's boxes take its mean score, and the holes of every
track are filled by its (weight-swapped) linear interpolation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._codes import int_order, segment_bounds
from .._ops import group_means_like_numpy
from ..tracking_input import EncodedTracks


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
