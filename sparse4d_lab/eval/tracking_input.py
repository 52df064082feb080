"""A tracking input as every tracking family reads it: checked once (classes, one box per id and frame) and with
its keys (scene, time, id, class) replaced by integer codes, frames numbered by scene then time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._codes import dense_rank, factorize, first_duplicate
from .records import EvalInputError, Tracks, as_tracks, class_codes, shared_codes


@dataclass(frozen=True)
class EncodedTracks:
    """One side (ground truth or predictions) of a tracking input with integer keys.

    frame: index of the (scene, t) frame, frames numbered by scene then time; track: index of the (scene, id)
    track; label: class index. Rows keep the record order.
    """

    frame: np.ndarray
    track: np.ndarray
    track_id: np.ndarray
    label: np.ndarray
    xy: np.ndarray
    score: np.ndarray

    def select(self, mask: np.ndarray) -> EncodedTracks:
        return EncodedTracks(
            self.frame[mask], self.track[mask], self.track_id[mask], self.label[mask], self.xy[mask], self.score[mask]
        )


@dataclass(frozen=True)
class TrackingInput:
    """Validated tracking input: both sides encoded, the classes, and per frame its scene and time."""

    gt: EncodedTracks
    pred: EncodedTracks
    classes: list[Any]
    frame_scene: np.ndarray
    frame_time: np.ndarray


def encode_tracking(gt: Tracks, pred: Tracks, classes: Iterable[Any] | None = None) -> TrackingInput:
    """Check a tracking input once (classes, one box per id and frame) and replace its keys by integer codes.

    The frames of a scene are the distinct `t` of its ground truth and predictions.
    """
    classes, gt_cls, pred_cls = class_codes(gt.label, pred.label, classes)
    gt_scene, pred_scene = shared_codes(gt.scene, pred.scene, "scene")
    t_all = np.r_[np.asarray(gt.t, float), np.asarray(pred.t, float)]
    scene_all = np.r_[gt_scene, pred_scene]
    t_code = factorize(t_all)[0]
    n_t = int(t_code.max()) + 1 if t_code.size else 1
    frame_key = scene_all * n_t + t_code
    frame, n_frames = dense_rank(frame_key)
    frame_scene, frame_time = np.zeros(n_frames, np.int64), np.zeros(n_frames)
    frame_scene[frame] = frame_key // n_t
    frame_time[frame] = t_all
    sides = []
    for role, tr, f, sc, cls in (
        ("ground truth", gt, frame[: len(gt)], gt_scene, gt_cls),
        ("prediction", pred, frame[len(gt) :], pred_scene, pred_cls),
    ):
        id_code = factorize(tr.track_id)[0]
        dup = first_duplicate(f, id_code)
        if dup is not None:
            i, j = dup
            raise EvalInputError(
                f"{role} records {i} and {j} share scene={tr.scene[i].item()!r}, t={tr.t[i].item()!r}, "
                f"id={tr.track_id[i].item()!r}; each track id may appear once per frame"
            )
        track = dense_rank(sc * (int(id_code.max(initial=0)) + 1) + id_code)[0]
        sides.append(EncodedTracks(f, track, tr.track_id, cls, tr.xy, tr.score.astype(float)))
    return TrackingInput(sides[0], sides[1], classes, frame_scene, frame_time)


def tracking_input(
    gt: Tracks | Sequence[Mapping[str, Any]],
    pred: Tracks | Sequence[Mapping[str, Any]],
    classes: Iterable[Any] | None = None,
) -> TrackingInput:
    """Ground truth and predictions in either form, checked and encoded (`encode_tracking`); a ground truth
    without boxes is an error, since nothing could be evaluated against it."""
    gt = as_tracks(gt, "ground truth", gt=True)
    pred = as_tracks(pred, "prediction", gt=False)
    if len(gt) == 0:
        raise EvalInputError("the ground truth holds no boxes: there is nothing to evaluate against")
    return encode_tracking(gt, pred, classes)
