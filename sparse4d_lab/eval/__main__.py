"""Command line: evaluate any detector's or tracker's output files and print one JSON object.

    python -m sparse4d_lab.eval detection --gt GT.json --pred PRED.json [--classes a,b]
    python -m sparse4d_lab.eval tracking --gt GT.json --pred PRED.json [--classes a,b] [--min-score S] [--gate M]
    python -m sparse4d_lab.eval false-positives --gt GT.json --pred PRED.json [--distractors D.json]

Files hold JSON lists of records: detection `{sample, x, y, z, w, l, h, yaw, vx, vy, cls, score}`, tracking adds
`{scene, t, id}`. Undefined figures (e.g. a class without ground truth) print as null. Bad input exits with
status 2 and a message naming the record and field.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from .detection import evaluate_detection
from .false_positives import false_positive_report
from .records import (
    EvalInputError,
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
    ):
        p = sub.add_parser(name, help=help_text)
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
