"""nuScenes tracking metrics: AMOTA, AMOTP and the legacy figures at the best-MOTA threshold.

Reproduces nuscenes-devkit 1.2.0 (`tracking/loaders.py:create_tracks`, `tracking/algo.py:TrackingEvaluation`,
`tracking/metrics.py`, py-motmetrics 1.4.0 underneath). Quirks kept on purpose, because the reference numbers
contain them:

* a predicted track's boxes all get the track's mean score (per scene and id, before interpolation);
* holes inside a track (ground truth and predictions, per scene and id, whatever the class) are filled at every
  frame of the scene between two boxes by linear interpolation whose weights are swapped: the box at time t
  between boxes at t0 < t1 gets `(1 - r) * b0 + r * b1` with `r = (t1 - t) / (t1 - t0)`; it takes the class of
  the later box, and its score `(1 - r) * s + r * s` may differ from `s` in the last bit;
* per class, frames with neither ground truth nor (thresholded) predictions are skipped; TID and LGD count the
  remaining frames of a class (each worth 0.5 s), and FAF = false positives per remaining frame x 100;
* recall thresholds: the scores of the predictions in MATCH events (not SWITCH) of a run without threshold,
  40 recall levels from 0.1 to 1 interpolated with `np.interp(..., right=0)`; levels above the recall reached
  count as MOTAR 0 and MOTP 2 m in AMOTA/AMOTP; a threshold reached twice is evaluated once and repeated;
* MOTAR = max(0, 1 - (misses + switches + FP - (1 - recall) x GT) / (recall x GT)) with recall = matches / GT,
  i.e. max(0, 1 - FP / matches); MOTA is clipped at 0 here (unlike py-motmetrics);
* the legacy figures (MOTA, MOTP, recall, MT, ML, FAF, TP, FP, FN, IDS, FRAG, TID, LGD) are read at the
  threshold with the highest MOTA (the highest recall among equals); `overall` sums MT, ML, TP, FP, FN, IDS,
  FRAG over classes and averages everything else, ignoring classes without ground truth (NaN);
* only scenes present in the ground truth are evaluated (the devkit loops over the ground-truth scenes), and a
  scene's frames are the distinct `t` of its ground truth and predictions;
* a class with ground truth but no matched prediction gets the devkit's worst values (`metric_worst`), where
  ML counts distinct ids across scenes (the devkit collects bare ids);
* distances are those of `sklearn.metrics.pairwise.euclidean_distances`, which the devkit calls per class and
  frame: |a|^2 - 2 a.b + |b|^2 with a BLAS dot product, so coincident boxes are ~1e-7 m apart rather than 0
  and the last bits depend on whether the frame holds one box on a side (see `_ops.blas_style_distances`);
  the gate is `d < 2 m`.

The devkit's steps, one module each: `loaders.py` (create_tracks), `problem.py` (the gated, class-aware
association problem split into components), `replay.py` (the frame loop, replayed per component and score
cut-off with `_association`), `metrics.py` (thresholds and figures), `algo.py` (TrackingEvaluation).
"""

from .algo import nuscenes_from_input, nuscenes_tracking
from .metrics import TrackingConfig

__all__ = ["TrackingConfig", "nuscenes_from_input", "nuscenes_tracking"]
