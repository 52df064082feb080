"""`TrackingFrames`: the ground truth and hypotheses of tracking sequences on the floor plane, validated, with the
candidate pairs every tracking family reads (one neighbour search, shared by the gated metrics and HOTA)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ._association import Pairs
from ._codes import combine_keys, first_duplicate
from ._ops import neighbour_pairs
from .records import EvalInputError, Tracks
from .tracking_input import TrackingInput, encode_tracking


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
