"""Command line: evaluate any detector's or tracker's output files and print one JSON object.

    python -m sparse4d_lab.eval detection --gt GT.json --pred PRED.json [--classes a,b]
    python -m sparse4d_lab.eval tracking --gt GT.json --pred PRED.json [--classes a,b] [--min-score S] [--gate M]
    python -m sparse4d_lab.eval false-positives --gt GT.json --pred PRED.json [--distractors D.json]
    python -m sparse4d_lab.eval aicity --gt [SCENE_ID=]ground_truth.json ... --pred track1.txt [--classes a,b]

Files hold JSON lists of records: detection `{sample, x, y, z, w, l, h, yaw, vx, vy, cls, score}`, tracking adds
`{scene, t, id}`. `aicity` reads the AI City 2025 track-1 files instead: MTMC ground_truth.json files (the scene
id before `=`, or the trailing number of the scene folder) or ground truth in the submission format (`.txt`), and a
submission `track1.txt`; it prints the 3D HOTA by scene and class. Undefined figures (e.g. a class without ground
truth) print as null. Bad input exits with status 2 and a message naming the record and field.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .aicity import evaluate_aicity, ground_truth_tracks, read_submission, scene_number
from .detection import evaluate_detection
from .false_positives import false_positive_report
from .records import (
    EvalInputError,
    Tracks,
    class_codes,
    detections_from_records,
    finite_or_none,
    load_records,
    tracks_from_records,
)
from .tracking import evaluate_tracking


def _classes(text: str | None) -> list[str] | None:
    if text is None:
        return None
    classes = [c.strip() for c in text.split(",") if c.strip()]
    if not classes:
        raise EvalInputError("--classes is empty; give a comma-separated list such as car,pedestrian")
    return classes


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sparse4d_lab.eval", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("detection", "nuScenes detection metrics (mAP, NDS, TP errors)"),
        ("tracking", "CLEAR-MOT/IDF1, HOTA, nuScenes AMOTA and ID stability"),
        ("false-positives", "false positives per frame, by score threshold"),
        ("aicity", "AI City 2025 track 1: 3D HOTA (3D IoU) of a track1.txt per scene and class"),
    ):
        p = sub.add_parser(name, help=help_text)
        if name == "aicity":
            p.add_argument(
                "--gt",
                required=True,
                nargs="+",
                help="[SCENE_ID=]ground_truth.json, or a .txt in the submission format",
            )
            p.add_argument("--pred", required=True, help="submission file (track1.txt)")
        else:
            p.add_argument("--gt", required=True, help="ground-truth records (JSON list)")
            p.add_argument("--pred", required=True, help="predicted records (JSON list)")
        p.add_argument("--classes", help="comma-separated classes to evaluate (default: all classes present)")
        if name == "tracking":
            p.add_argument("--min-score", type=float, help="drop predictions below this score before CLEAR/HOTA")
            p.add_argument("--gate", type=float, default=2.0, help="matching distance on the floor plane in metres")
        if name == "false-positives":
            p.add_argument("--distractors", help="JSON object {sample: [[x,y,z,l,w,h,yaw,vx,vy,vz], ...]}")
            p.add_argument("--near", type=float, default=1.0, help="'near a distractor' distance in metres")
    return parser


def run(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate as the command line would and return the result (before JSON encoding)."""
    args = _parser().parse_args(argv)
    if args.command == "aicity":
        return _aicity(args.gt, args.pred, _classes(args.classes))
    gt_records = load_records(args.gt, "ground truth")
    pred_records = load_records(args.pred, "prediction")
    classes = _classes(args.classes)
    if args.command == "detection":
        return evaluate_detection(
            detections_from_records(gt_records, "ground truth", gt=True),
            detections_from_records(pred_records, "prediction"),
            classes=classes,
        )
    if args.command == "tracking":
        return evaluate_tracking(
            tracks_from_records(gt_records, "ground truth", gt=True),
            tracks_from_records(pred_records, "prediction"),
            classes=classes,
            min_score=args.min_score,
            gate=args.gate,
        )
    gt = detections_from_records(gt_records, "ground truth", gt=True)
    pred = detections_from_records(pred_records, "prediction")
    if classes is not None:
        class_codes(gt.label, pred.label, classes)  # rejects records of other classes
    distractors = None
    if args.distractors:
        with open(args.distractors) as fh:
            distractors = json.load(fh)
        if not isinstance(distractors, dict):
            raise EvalInputError("--distractors must hold a JSON object {sample: [[10 numbers], ...]}")
    return false_positive_report(gt, pred, distractors=distractors, near_distance=args.near)


def _aicity(gt_paths: Sequence[str], pred_path: str, classes: list[str] | None) -> dict[str, Any]:
    """Ground truth of every scene given; predictions for other scenes are counted and left out."""
    parts = []
    for item in gt_paths:
        given = re.fullmatch(r"(\d+)=(.+)", item)
        path = given[2] if given else item
        if path.endswith(".txt"):
            parts.append(read_submission(path))
        else:
            scene_id = int(given[1]) if given else scene_number(Path(path).resolve().parent.name)
            parts.append(ground_truth_tracks(path, scene_id))
    gt = Tracks(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("scene", "t", "track_id", "boxes", "label", "score"))
    )
    pred = read_submission(pred_path)
    known = np.isin(pred.scene, np.unique(gt.scene))
    result = evaluate_aicity(gt, pred.select(known), classes)
    result["pred_boxes_of_other_scenes"] = int((~known).sum())
    return result


def main(argv: Sequence[str] | None = None) -> int:
    try:
        result = run(argv)
    except EvalInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(finite_or_none(result), indent=2, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
