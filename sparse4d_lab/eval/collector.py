"""Collects a model's outputs over an evaluation pass and turns them into every metric of a study's table.

Per frame it keeps the ground truth, the post-processed detections with their tracking ids, every query's score
with whether the matcher gave it a GT, and the anchor slots of matched and surviving queries. ``eval_frames.npz``
keeps those frames after the run (``save_frames`` / ``load_frames``), so a study's figures can be drawn across runs
from MLflow without the model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .detection import evaluate_detection
from .false_positives import false_positive_report, query_score_distribution, unmatched_class_scores
from .queries import query_utilisation
from .records import Detections, Tracks
from .tracking import evaluate_tracking


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()


def one_class(det: Detections) -> Detections:
    """The same boxes under one label: the AP over them is what the boxes reach whatever class they were given, so
    its gap to the mAP is what confusing one class for another costs."""
    return replace(det, label=np.full(len(det), "object"))


def frame_detections(frames: Sequence[dict[str, Any]], classes: Sequence[str], gt: bool) -> Detections:
    """The ground truth (``gt``) or the detections of collected frames, as evaluator input."""
    key = ("gt_boxes", "gt_labels") if gt else ("boxes", "labels")
    names = np.asarray(classes)
    return Detections.from_arrays(
        sample=np.concatenate([[x["sample"]] * len(x[key[1]]) for x in frames] or [np.zeros(0, str)]),
        boxes=np.concatenate([x[key[0]] for x in frames]).reshape(-1, 10),
        label=names[np.concatenate([x[key[1]] for x in frames]).astype(int)],
        score=None if gt else np.concatenate([x["scores"] for x in frames]),
    )


# Per-frame arrays of a collected frame, stored concatenated with offsets; query scores as float16 (a histogram
# does not need more) to keep the file small.
FRAME_ARRAYS = {
    "gt_boxes": np.float32,
    "gt_labels": np.int16,
    "gt_ids": np.int64,
    "distractors": np.float32,
    "boxes": np.float32,
    "scores": np.float32,
    "cls_scores": np.float32,
    "labels": np.int16,
    "ids": np.int64,
    "query_scores": np.float16,
    "query_class_scores": np.float16,
    "matched": bool,
    "matched_slots": np.int32,
    "kept_slots": np.int32,
}
BOX_ARRAYS = ("gt_boxes", "distractors", "boxes")


def save_frames(frames: Sequence[dict[str, Any]], classes: Sequence[str], path: Path) -> Path:
    """Write collected frames (``EvalCollector.frames``) to a compressed ``.npz`` that ``load_frames`` reads."""
    arrays: dict[str, np.ndarray] = {
        "classes": np.asarray(list(classes), str),
        "scene": np.asarray([f["scene"] for f in frames], str),
        "t": np.asarray([f["t"] for f in frames], np.int64),
        "sample": np.asarray([f["sample"] for f in frames], str),
        "has_distractors": np.asarray([f["distractors"] is not None for f in frames], bool),
    }
    widths = {**dict.fromkeys(BOX_ARRAYS, 10), "query_class_scores": len(classes)}  # rows of these; the rest 1-D
    for key, dtype in FRAME_ARRAYS.items():
        parts = [np.zeros((0, 10)) if f[key] is None else np.asarray(f[key]) for f in frames]
        parts = [p.reshape(-1, widths[key]) if key in widths else p.reshape(-1) for p in parts]
        arrays[key] = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
        arrays[f"{key}_offsets"] = np.r_[0, np.cumsum([len(p) for p in parts])].astype(np.int64)
    np.savez_compressed(path, **arrays)
    return path


def load_frames(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(frames, classes) of a ``save_frames`` file, each frame with the keys ``EvalCollector.update`` fills."""
    with np.load(path) as data:
        arrays = {key: data[key] for key in data.files}
    frames = []
    for i, (scene, t, sample) in enumerate(zip(arrays["scene"], arrays["t"], arrays["sample"], strict=True)):
        frame: dict[str, Any] = {"scene": str(scene), "t": int(t), "sample": str(sample)}
        for key in FRAME_ARRAYS:
            if f"{key}_offsets" not in arrays:  # a file written before the key existed
                continue
            lo, hi = arrays[f"{key}_offsets"][i : i + 2]
            frame[key] = arrays[key][lo:hi]
        if not arrays["has_distractors"][i]:
            frame["distractors"] = None
        frames.append(frame)
    return frames, [str(c) for c in arrays["classes"]]


# The score that admits a detection with an instance id to tracking, at ``track_min_score``.
TRACK_SCORES = ("class", "output")


class EvalCollector:
    """``update`` once per evaluation batch, ``compute`` at the end of the pass, ``reset`` before the next.

    ``track_score`` is the tracking rule. ``"class"`` (TAO's and upstream Sparse4D's ``tracking_threshold``):
    tracks are the detections whose class score is >= ``track_min_score``, and every tracking family, nuScenes
    AMOTA and IDS included, sees only those. ``"output"``: CLEAR, IDF1, HOTA and ID stability drop tracks whose
    output score (class x centerness) is below ``track_min_score``, while AMOTA and the devkit's IDS sweep their
    own thresholds over every detection with an instance id. Track records carry the output score in both.
    """

    def __init__(
        self,
        classes: Sequence[str],
        fp_thresholds: Sequence[float] = (0.05, 0.3, 0.5),
        track_min_score: float = 0.3,
        track_score: str = "output",
        num_queries: int | None = None,
        high_confidence: float = 0.5,
    ):
        if track_score not in TRACK_SCORES:
            raise ValueError(f"eval.track_score must be one of {', '.join(TRACK_SCORES)}; got {track_score!r}")
        self.classes = list(classes)
        self.fp_thresholds, self.track_min_score = tuple(fp_thresholds), track_min_score
        self.track_score = track_score
        self.num_queries, self.high_confidence = num_queries, high_confidence
        self.report: dict[str, Any] = {}
        self.bev_frames: dict[str, dict[str, Any]] = {}  # stage -> the frame of its bird's-eye view figure
        self.reset()

    def reset(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def update(self, batch: dict[str, Any], detections: list[dict[str, torch.Tensor]], output, assignment) -> None:
        for b, det in enumerate(detections):
            scene, t = batch["scene"][b], int(batch["frame_idx"][b])
            self.frames.append(
                {
                    "scene": scene,
                    "t": t,
                    "sample": f"{scene}/{t:04d}",
                    "gt_boxes": _np(batch["gt_boxes"][b]),
                    "gt_labels": _np(batch["gt_labels"][b]),
                    "gt_ids": _np(batch["gt_ids"][b]),
                    "distractors": _np(batch["distractor_boxes"][b]) if "distractor_boxes" in batch else None,
                    "boxes": _np(det["boxes_3d"]),
                    "scores": _np(det["scores_3d"]),
                    "cls_scores": _np(det["cls_scores"]),
                    "labels": _np(det["labels_3d"]),
                    "ids": _np(det["instance_ids"]),
                    "query_scores": _np(det["query_scores"]),
                    "query_class_scores": _np(det["query_class_scores"]),
                    "matched": _np(assignment.positive[b]),
                    "matched_slots": _np(output.anchor_slot[b][assignment.positive[b]]),
                    "kept_slots": _np(output.anchor_slot[b][det["query_kept"]]),
                }
            )

    def _tracks(self, f: list[dict[str, Any]], gt: bool) -> Tracks:
        names = np.asarray(self.classes)
        ids = [x["gt_ids"] if gt else x["ids"] for x in f]
        keep = [np.ones(len(i), bool) if gt else i >= 0 for i in ids]  # detections without a track id are not tracks
        if not gt and self.track_score == "class":
            keep = [k & (x["cls_scores"] >= self.track_min_score) for x, k in zip(f, keep, strict=True)]
        boxes = "gt_boxes" if gt else "boxes"
        labels = "gt_labels" if gt else "labels"
        return Tracks.from_arrays(
            scene=np.concatenate([[x["scene"]] * int(k.sum()) for x, k in zip(f, keep, strict=True)]),
            t=np.concatenate([[x["t"]] * int(k.sum()) for x, k in zip(f, keep, strict=True)]),
            track_id=np.concatenate([i[k] for i, k in zip(ids, keep, strict=True)]),
            boxes=np.concatenate([x[boxes][k] for x, k in zip(f, keep, strict=True)]).reshape(-1, 10),
            label=names[np.concatenate([x[labels][k] for x, k in zip(f, keep, strict=True)]).astype(int)],
            score=None if gt else np.concatenate([x["scores"][k] for x, k in zip(f, keep, strict=True)]),
        )

    def compute(self, stage: str = "test") -> dict[str, float]:
        """Flat metrics for logging; the full nested report is kept in ``self.report`` and the pass's middle frame
        in ``self.bev_frames[stage]`` (a validation pass's is gone by the time artifacts are written)."""
        if not self.frames:
            return {}
        self.bev_frames[stage] = self.frames[len(self.frames) // 2]
        metrics, self.report = self._evaluate(self.frames)
        return metrics

    def scene_metrics(self) -> dict[str, dict[str, float]]:
        """The same metrics on each scene of the pass alone: the test set's own sampling error, which a spread over
        training seeds does not show, is estimated by resampling these (``analysis.stats``)."""
        scenes: dict[str, list[dict[str, Any]]] = {}
        for frame in self.frames:
            scenes.setdefault(frame["scene"], []).append(frame)
        return {scene: self._evaluate(frames)[0] for scene, frames in sorted(scenes.items())}

    def _evaluate(self, frames: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
        """(flat metrics, nested report) of a list of collected frames."""
        gt, pred = frame_detections(frames, self.classes, True), frame_detections(frames, self.classes, False)
        samples = [x["sample"] for x in frames]
        distractors = {x["sample"]: x["distractors"] for x in frames if x["distractors"] is not None}
        detection = evaluate_detection(gt, pred, classes=self.classes) if len(gt) else {}
        agnostic = evaluate_detection(one_class(gt), one_class(pred), classes=("object",)) if len(gt) else {}
        fp = false_positive_report(
            gt,
            pred,
            score_thresholds=self.fp_thresholds,
            high_confidence=self.high_confidence,
            distractors=distractors or None,
            samples=samples,
            class_scores=np.concatenate([x["cls_scores"] for x in frames]),
            classes=self.classes,
        )
        matched = np.concatenate([x["matched"] for x in frames])
        scores = query_score_distribution(np.concatenate([x["query_scores"] for x in frames]), matched)
        class_columns = np.concatenate([x["query_class_scores"] for x in frames])
        scores["unmatched_by_class"] = unmatched_class_scores(class_columns, matched, self.classes)
        num_slots = self.num_queries or int(max(len(x["query_scores"]) for x in frames))
        queries = query_utilisation(
            [x["matched_slots"] for x in frames],
            num_slots,
            survived=[x["kept_slots"] for x in frames],
            num_frames=len(frames),
        )
        gt_tracks = self._tracks(frames, gt=True)
        min_score = self.track_min_score if self.track_score == "output" else None  # "class": applied by _tracks
        tracking = (
            evaluate_tracking(gt_tracks, self._tracks(frames, gt=False), min_score=min_score) if len(gt_tracks) else {}
        )
        report = {
            "detection": detection,
            "detection_one_class": agnostic,
            "false_positives": fp,
            "query_scores": scores,
            "queries": queries,
            "tracking": tracking,
        }
        metrics = {
            "mAP": detection.get("mAP", math.nan),
            "mAP_agnostic": agnostic.get("mAP", math.nan),
            "NDS": detection.get("NDS", math.nan),
            "hc_fp_per_frame": fp["high_confidence"]["per_frame"],
            "hc_fp_cls_per_frame": fp["high_confidence_class"]["per_frame"],
            # Unmatched queries whose class score (before x centerness) is high: what passes a decoder's score
            # threshold, which TAO and upstream Sparse4D apply to the class score alone.
            "hc_unmatched_per_frame": np.mean(
                [np.sum((x["query_scores"] >= self.high_confidence) & ~x["matched"]) for x in frames]
            ),
            "unmatched_score_mean": scores["unmatched"]["mean"],
            "matched_score_mean": scores["matched"]["mean"],
            "unmatched_share_above_0.3": scores["unmatched"]["share_above_0.3"],
            "gini": queries["matched"]["gini"],
            "gini_survived": queries["survived"]["gini"],
        }
        for t in self.fp_thresholds:
            metrics[f"fp_per_frame_{t:g}"] = fp["class_aware"][str(float(t))]["per_frame"]
        for name in self.classes:
            metrics[f"AP/{name}"] = detection.get("mean_dist_aps", {}).get(name, math.nan)
            metrics[f"unmatched_score/{name}"] = scores["unmatched_by_class"][name]["mean"]
            metrics[f"hc_fp_cls_per_frame/{name}"] = fp["by_class"][name]["high_confidence_class_per_frame"]
        per_class = [metrics[f"unmatched_score/{name}"] for name in self.classes]
        metrics["unmatched_score_worst"] = max((v for v in per_class if not math.isnan(v)), default=math.nan)
        if tracking:
            metrics.update(
                {
                    "MOTA": tracking["clear"]["mota"],
                    "IDF1": tracking["clear"]["idf1"],
                    "id_switches": tracking["clear"]["num_switches"],
                    # The devkit's IDS: each class at its own best-MOTA output-score threshold among the tracks the
                    # rule admits, so under "output" an arm whose scores sit below track_min_score still has tracks.
                    "ids_best_mota": tracking["nuscenes"]["overall"]["ids"],
                    "HOTA": tracking["hota"]["HOTA"],
                    "AMOTA": tracking["nuscenes"]["overall"]["amota"],
                    "spurious_tracks": tracking["id_stability"]["spurious_tracks"],
                }
            )
        return {k: float(v) for k, v in metrics.items()}, report

    def write_artifacts(self, out: Path) -> list[Path]:
        """``evaluation.json`` (the last pass's full report), the figure of its matched/unmatched scores, a
        bird's-eye view of a frame of each stage's last pass (``bev_val_frame.png``, ``bev_test_frame.png``), and
        ``eval_frames.npz`` (the last pass's frames, for figures that compare runs)."""
        from .figures import bev_frame, score_histogram

        out.mkdir(parents=True, exist_ok=True)
        path = out / "evaluation.json"
        path.write_text(json.dumps(self.report, indent=1, default=float))
        views = sorted(self.bev_frames.items(), key=lambda item: item[0] != "val")  # validation first
        bev = [bev_frame(frame, self.classes, out / f"bev_{stage}_frame.png") for stage, frame in views]
        if not self.frames:
            return [path, *bev]
        histogram = score_histogram(self.frames, out / "query_scores.png")
        return [path, histogram, *bev, save_frames(self.frames, self.classes, out / "eval_frames.npz")]
