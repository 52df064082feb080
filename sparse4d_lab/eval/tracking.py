"""Tracking metrics: CLEAR-MOT and IDF1 (py-motmetrics), HOTA (TrackEval), AMOTA (nuScenes) and ID stability.

Each family follows its reference implementation, including where they disagree, so each is reported under its
own names (py-motmetrics 1.4.0, TrackEval 1.0.0, nuscenes-devkit 1.2.0):

* py-motmetrics (`motmetrics.py`: `clear_mot`): CLEAR-MOT and IDF1 with a 2 m gate on the floor plane;
* TrackEval (`trackeval.py`: `trackeval_metrics`): HOTA, CLEAR and Identity on a similarity falling to 0 at 4 m;
* nuScenes (`nuscenes_tracking/`: `nuscenes_tracking`): AMOTA, AMOTP and the devkit's per-threshold figures;
* ID stability (`motmetrics.py`: `id_stability`), on the py-motmetrics association: distinct predicted ids per
  ground-truth track, spurious tracks (predicted ids never matched), median track lengths.

Frames are given as `TrackingFrames` (any number of independent sequences; ids only need to be unique within a
frame of a sequence). Metrics over several sequences are combined as the libraries combine them: counts summed
and ratios recomputed (HOTA's association scores weighted by true positives).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ._association import Pairs
from .motmetrics import associate_clear, clear_summary, id_stability_summary
from .nuscenes_tracking import TrackingConfig, nuscenes_from_input
from .records import Tracks
from .trackeval import trackeval_metrics
from .tracking_frames import TrackingFrames
from .tracking_input import TrackingInput, tracking_input


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
    inp = tracking_input(gt, pred, classes)
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
