"""Evaluation: nuScenes detection metrics, false positives, tracking (CLEAR-MOT, IDF1, HOTA, AMOTA), queries.

Every evaluator works on plain records (the JSON files of the command line, `python -m sparse4d_lab.eval`) or
on arrays (`Detections`, `Tracks`, `TrackingFrames`), so it serves any detector, not only this project's.
"""

from .detection import DetectionConfig, MetricData, detection_metric_data, evaluate_detection, summarize_detection
from .false_positives import false_positive_report, match_detections, near_distractor, query_score_distribution
from .motmetrics import clear_mot, id_stability
from .nuscenes_tracking import TrackingConfig, nuscenes_tracking
from .queries import gini, lorenz_curve, query_utilisation, slot_activation
from .records import Detections, EvalInputError, Tracks, detections_from_records, load_records, tracks_from_records
from .trackeval import trackeval_metrics
from .tracking import evaluate_tracking
from .tracking_frames import TrackingFrames

__all__ = [
    "DetectionConfig",
    "Detections",
    "EvalInputError",
    "MetricData",
    "TrackingConfig",
    "TrackingFrames",
    "Tracks",
    "clear_mot",
    "detection_metric_data",
    "detections_from_records",
    "evaluate_detection",
    "evaluate_tracking",
    "false_positive_report",
    "gini",
    "id_stability",
    "load_records",
    "lorenz_curve",
    "match_detections",
    "near_distractor",
    "nuscenes_tracking",
    "query_score_distribution",
    "query_utilisation",
    "slot_activation",
    "summarize_detection",
    "trackeval_metrics",
    "tracks_from_records",
]
