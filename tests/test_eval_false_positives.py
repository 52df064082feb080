"""False-positive analysis: counts per threshold and frame, class-aware matching, distractors, query scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from records import box

from sparse4d_lab.eval import (
    Detections,
    EvalInputError,
    false_positive_report,
    match_detections,
    near_distractor,
    query_score_distribution,
)
from sparse4d_lab.eval.__main__ import main
from sparse4d_lab.eval.false_positives import unmatched_class_scores

GT = [box("f0", 0.0, 0.0), box("f1", 0.0, 0.0, "pedestrian")]
PRED = [
    box("f0", 0.5, 0.0, score=0.9),  # true positive
    box("f0", 0.6, 0.0, score=0.6),  # duplicate: false positive (ground truth taken)
    box("f0", 30.0, 0.0, score=0.2),  # free-space false positive, low score
    box("f1", 0.2, 0.0, "car", 0.7),  # wrong class: false positive class-aware, matched class-agnostic
    box("f2", 5.0, 5.0, score=0.04),  # below every threshold
]


def test_counts_per_threshold_and_frame() -> None:
    report = false_positive_report(GT, PRED)
    assert report["num_frames"] == 3
    aware, agnostic = report["class_aware"], report["class_agnostic"]
    assert aware["0.05"]["total"] == 3 and aware["0.3"]["total"] == 2 and aware["0.5"]["total"] == 2
    assert agnostic["0.05"]["total"] == 2 and agnostic["0.5"]["total"] == 1
    assert aware["0.05"]["per_frame"] == pytest.approx(3 / 3)
    assert aware["0.05"]["max_per_frame"] == 2 and aware["0.05"]["frames_with_fp"] == 2
    assert report["high_confidence"]["total"] == 2 and report["high_confidence"]["per_frame"] == pytest.approx(2 / 3)


def test_high_confidence_on_class_scores_counts_false_positives_whatever_their_output_score() -> None:
    # Class scores before x centerness: the free-space false positive (output 0.2) is confident by its class score.
    report = false_positive_report(GT, PRED, class_scores=[0.95, 0.9, 0.55, 0.75, 0.3])
    assert report["high_confidence"]["total"] == 2
    block = report["high_confidence_class"]
    assert block["total"] == 3 and block["max_per_frame"] == 2 and block["per_frame"] == pytest.approx(3 / 3)
    assert "high_confidence_class" not in false_positive_report(GT, PRED)
    with pytest.raises(EvalInputError, match="class_scores has 2 values for 5 predictions"):
        false_positive_report(GT, PRED, class_scores=[0.9, 0.8])


def test_curve_is_false_positives_per_frame_against_threshold() -> None:
    report = false_positive_report(GT, PRED, curve_thresholds=[0.0, 0.5, 0.65, 0.8, 1.0])
    assert report["curve"]["fp_per_frame"] == pytest.approx([4 / 3, 2 / 3, 1 / 3, 0, 0])
    assert report["curve"]["fp_per_frame_class_agnostic"] == pytest.approx([3 / 3, 1 / 3, 0, 0, 0])


def test_thresholding_equals_matching_only_the_detections_above_it() -> None:
    rng = np.random.default_rng(0)
    gt = [box(f"f{k % 7}", float(x), float(y)) for k, (x, y) in enumerate(rng.uniform(0, 10, (40, 2)))]
    pred = [
        box(f"f{k % 7}", float(x), float(y), score=float(s))
        for k, ((x, y), s) in enumerate(zip(rng.uniform(0, 10, (60, 2)), rng.random(60), strict=True))
    ]
    full = false_positive_report(gt, pred, score_thresholds=[0.5])["class_aware"]["0.5"]["total"]
    above = [r for r in pred if r["score"] >= 0.5]
    only = false_positive_report(gt, above, score_thresholds=[0.0])["class_aware"]["0.0"]["total"]
    assert full == only


def test_match_detections_class_aware_and_agnostic() -> None:
    from sparse4d_lab.eval.records import detections_from_records

    gt, pred = detections_from_records(GT, gt=True), detections_from_records(PRED)
    assert match_detections(gt, pred).tolist() == [0, -1, -1, -1, -1]
    assert match_detections(gt, pred, class_aware=False).tolist() == [0, -1, -1, 1, -1]


def test_near_distractor_rule_uses_the_footprint() -> None:
    pred = Detections.from_arrays(
        ["f0", "f0", "f0", "f1"],
        np.array(
            [
                [0.0, 3.4, 0, 1, 1, 1, 0, 0, 0, 0],  # 1.4 m from the footprint edge (y = 2): free
                [0.0, 2.9, 0, 1, 1, 1, 0, 0, 0, 0],  # 0.9 m from the edge: near, 2.9 m from the centre
                [3.9, 0.0, 0, 1, 1, 1, 0, 0, 0, 0],  # inside the 8 m long footprint (rotated along x)
                [0.0, 0.5, 0, 1, 1, 1, 0, 0, 0, 0],
            ]
        ),  # another frame without distractors
        ["car"] * 4,
        [0.9] * 4,
    )
    distractor = np.array([[0.0, 0.0, 0.5, 8.0, 4.0, 1.0, 0.0, 0, 0, 0]])  # l=8 along x, w=4 along y
    assert near_distractor(pred, {"f0": distractor}).tolist() == [False, True, True, False]
    rotated = distractor.copy()
    rotated[0, 6] = np.pi / 2  # now 8 m along y: the first two are inside
    assert near_distractor(pred, {"f0": rotated}).tolist() == [True, True, False, False]


def test_report_splits_near_and_free_false_positives() -> None:
    distractors = {"f0": [[30.5, 0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]]}
    block = false_positive_report(GT, PRED, distractors=distractors)["near_distractor"]
    assert block["0.05"] == {"near": 1, "free": 2, "near_share": pytest.approx(1 / 3)}
    assert block["0.5"]["near"] == 0


def test_query_score_distribution() -> None:
    scores = np.array([[0.9, 0.8, 0.1, 0.4], [0.7, 0.05, 0.35, 0.2]])
    matched = np.array([[True, True, False, False], [True, False, False, False]])
    out = query_score_distribution(scores, matched)
    assert out["matched"]["count"] == 3 and out["matched"]["mean"] == pytest.approx(0.8)
    assert out["unmatched"]["count"] == 5
    assert out["unmatched"]["share_above_0.3"] == pytest.approx(2 / 5)
    assert out["unmatched"]["q50"] == pytest.approx(0.2)
    with pytest.raises(EvalInputError):
        query_score_distribution(scores, matched[:, :2])


def test_cli_false_positives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(GT))
    (tmp_path / "pred.json").write_text(json.dumps(PRED))
    (tmp_path / "d.json").write_text(json.dumps({"f0": [[30.5, 0, 0.5, 1, 1, 1, 0, 0, 0, 0]]}))
    args = ["false-positives", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")]
    assert main([*args, "--distractors", str(tmp_path / "d.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["class_aware"]["0.05"]["total"] == 3 and out["near_distractor"]["0.05"]["near"] == 1


def test_false_positives_by_predicted_class_split_the_pooled_counts() -> None:
    # PRED's false positives: f0 car 0.6 (duplicate), f0 car 0.2, f1 car 0.7 (wrong class); the rest match or
    # fall below the decoder's cut. The class scores make the free-space one confident on its class alone.
    class_scores = [0.9, 0.6, 0.55, 0.7, 0.04]
    report = false_positive_report(
        GT, PRED, class_scores=class_scores, score_thresholds=(0.0,), classes=["car", "pedestrian"]
    )
    by_class = report["by_class"]
    assert set(by_class) == {"car", "pedestrian"}
    assert by_class["car"]["per_frame"] == pytest.approx(4 / 3)  # the three above and f2's 0.04 one, in 3 frames
    assert by_class["pedestrian"] == {
        "per_frame": 0.0,
        "high_confidence_per_frame": 0.0,
        "high_confidence_class_per_frame": 0.0,
    }
    assert by_class["car"]["high_confidence_per_frame"] == pytest.approx(2 / 3)  # output score 0.6 and 0.7
    assert by_class["car"]["high_confidence_class_per_frame"] == pytest.approx(3 / 3)  # class 0.6, 0.55, 0.7
    pooled = {
        "per_frame": report["class_aware"]["0.0"]["per_frame"],
        "high_confidence_per_frame": report["high_confidence"]["per_frame"],
        "high_confidence_class_per_frame": report["high_confidence_class"]["per_frame"],
    }
    for key, value in pooled.items():
        assert sum(block[key] for block in by_class.values()) == pytest.approx(value, abs=1e-12)


def test_each_class_column_of_unmatched_queries_shows_the_one_class_that_inflates() -> None:
    # 6 queries x 4 classes; queries 0 and 1 matched. On the 4 unmatched ones class 3 sits at 0.6-0.9 (its negative
    # signal gone), the others at 0.01-0.04, so the max over classes is class 3's alone.
    scores = np.full((6, 4), 0.02)
    scores[2:, 0] = [0.01, 0.02, 0.03, 0.04]
    scores[2:, 3] = [0.6, 0.7, 0.8, 0.9]
    scores[:2] = 0.95  # matched: high on every class, and left out
    matched = np.array([True, True, False, False, False, False])
    out = unmatched_class_scores(scores, matched, ["a", "b", "c", "d"], quantiles=(0.9,))
    assert out["d"]["mean"] == pytest.approx(0.75) and out["d"]["count"] == 4
    assert out["a"]["mean"] == pytest.approx(0.025) and out["b"]["mean"] == pytest.approx(0.02)
    assert out["d"]["q90"] == pytest.approx(0.87)  # linear interpolation: 0.8 + 0.7 * (0.9 - 0.8)
    assert max(out, key=lambda c: out[c]["mean"]) == "d"
    with pytest.raises(EvalInputError, match="differ"):
        unmatched_class_scores(scores, matched[:5], ["a", "b", "c", "d"])
