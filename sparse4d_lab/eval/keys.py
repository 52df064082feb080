"""The metric keys a job logs, without the evaluators: what sweeps, checks and the analysis validate against."""

from __future__ import annotations

from collections.abc import Sequence

# What ``EvalCollector.compute`` returns (the LightningModule logs them as ``val/<name>`` and ``test/<name>``),
# plus ``fp_per_frame_<t>`` for each false-positive threshold; tracking ones only when the split has tracks.
DETECTION_METRICS = (
    "mAP",
    "mAP_agnostic",
    "NDS",
    "hc_fp_per_frame",
    "hc_fp_cls_per_frame",
    "hc_unmatched_per_frame",
    "unmatched_score_mean",
    "unmatched_score_worst",
    "matched_score_mean",
    "unmatched_share_above_0.3",
    "gini",
    "gini_survived",
)
# Per class, as ``<name>/<class>``: the class's AP (mean over distance thresholds), the mean score of its own column
# over unmatched queries, and its false positives per frame at class score >= 0.5 (``unmatched_score_worst``: the
# largest of the second).
PER_CLASS_METRICS = ("AP", "unmatched_score", "hc_fp_cls_per_frame")
TRACKING_METRICS = ("MOTA", "IDF1", "id_switches", "ids_best_mota", "HOTA", "AMOTA", "spurious_tracks")
# Metric keys of one test scene's metrics: test_scene/<scene>/<metric>.
SCENE_PREFIX = "test_scene/"


def metric_names(fp_thresholds: Sequence[float], classes: Sequence[str] = ()) -> list[str]:
    return [
        *DETECTION_METRICS,
        *(f"fp_per_frame_{float(t):g}" for t in fp_thresholds),
        *(f"{m}/{c}" for m in PER_CLASS_METRICS for c in classes),
        *TRACKING_METRICS,
    ]
