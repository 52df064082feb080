"""nuScenes detection metrics: hand-built cases, properties, and the handling of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from records import box, collector_frame

from sparse4d_lab.eval import DetectionConfig, Detections, EvalInputError, evaluate_detection
from sparse4d_lab.eval.__main__ import main
from sparse4d_lab.eval.collector import EvalCollector
from sparse4d_lab.eval.detection import detection_metric_data


def grid_gt(n_samples: int = 4, per_sample: int = 5, cls: str = "car") -> list[dict]:
    return [box(f"s{s}", 10.0 * k, 3.0 * s, cls) for s in range(n_samples) for k in range(per_sample)]


def test_perfect_detections_score_ap_one_and_zero_errors() -> None:
    gt = grid_gt()
    pred = [dict(r, score=0.9) for r in gt]
    result = evaluate_detection(gt, pred)
    assert result["mAP"] == pytest.approx(1.0)
    assert all(ap == pytest.approx(1.0) for ap in result["label_aps"]["car"].values())
    errors = result["label_tp_errors"]["car"]
    assert errors["trans_err"] == errors["scale_err"] == errors["orient_err"] == errors["vel_err"] == 0.0
    assert errors["attr_err"] == 1.0  # no attributes: the devkit's undefined error counts as 1
    assert result["NDS"] == pytest.approx((5 * 1.0 + 4 * 1.0 + 0.0) / 10)


def test_one_false_positive_ranked_first() -> None:
    # 10 ground truths, 10 exact detections, plus one false positive with the highest score.
    gt = [box("s0", 10.0 * k, 0.0) for k in range(10)]
    pred = [dict(r, score=0.5) for r in gt] + [box("s0", 500.0, 500.0, score=0.99)]
    ap = evaluate_detection(gt, pred)["label_aps"]["car"]["2.0"]
    # precision at recall k/10 is k/(k+1); resampled without an envelope at 101 points, clipped at 0.1.
    rec = np.arange(1, 11) / 10
    prec = np.arange(1, 11) / np.arange(2, 12)
    curve = np.interp(np.linspace(0, 1, 101), rec, prec, right=0)
    expected = np.mean(np.maximum(curve[11:] - 0.1, 0)) / 0.9
    assert ap == pytest.approx(expected, abs=1e-12)
    assert ap < 1.0


def test_score_ties_visit_the_later_record_first() -> None:
    # Two detections with equal scores compete for one ground truth: the later record takes it.
    gt = [box("s0", 0.0, 0.0)]
    first, second = box("s0", 0.3, 0.0, score=0.5), box("s0", 1.5, 0.0, score=0.5)
    near_first = evaluate_detection(gt, [first, second])["label_tp_errors"]["car"]["trans_err"]
    near_second = evaluate_detection(gt, [second, first])["label_tp_errors"]["car"]["trans_err"]
    assert near_first == pytest.approx(1.5)  # `second` came later: it matched at 1.5 m
    assert near_second == pytest.approx(0.3)


def test_threshold_is_strict_and_distance_is_on_the_floor_plane() -> None:
    gt = [box("s0", 0.0, 0.0)]
    at_threshold = [box("s0", 2.0, 0.0, score=0.9, z=50.0)]
    aps = evaluate_detection(gt, at_threshold)["label_aps"]["car"]
    assert aps["2.0"] == 0.0 and aps["4.0"] == pytest.approx(1.0)


def test_class_without_ground_truth_scores_zero_like_the_devkit() -> None:
    gt = grid_gt()
    pred = [dict(r, score=0.9) for r in gt] + [box("s0", 0.0, 0.0, "bicycle", 0.8)]
    result = evaluate_detection(gt, pred)
    assert result["mean_dist_aps"]["bicycle"] == 0.0
    assert result["label_tp_errors"]["bicycle"]["trans_err"] == 1.0
    assert result["mAP"] == pytest.approx(0.5)


def test_class_list_is_configurable() -> None:
    gt = [*grid_gt(), box("s0", 100.0, 100.0, "pedestrian")]
    pred = [dict(r, score=0.9) for r in gt]
    result = evaluate_detection(gt, pred, classes=["pedestrian", "car"])
    assert list(result["label_aps"]) == ["pedestrian", "car"]
    cfg = DetectionConfig(dist_ths=(1.0, 2.0), dist_th_tp=1.0, min_recall=0.0, min_precision=0.0)
    assert set(evaluate_detection(gt, pred, cfg)["label_aps"]["car"]) == {"1.0", "2.0"}


def random_problem(seed: int, n_samples: int = 30) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for s in range(n_samples):
        for _ in range(rng.integers(0, 8)):
            x, y = rng.uniform(-20, 20, 2)
            cls = str(rng.choice(["car", "pedestrian"]))
            gt.append(box(f"s{s}", float(x), float(y), cls, yaw=float(rng.uniform(-3, 3))))
            if rng.random() < 0.8:
                pred.append(
                    box(
                        f"s{s}",
                        float(x + rng.normal(0, 1)),
                        float(y + rng.normal(0, 1)),
                        cls,
                        float(rng.random()),
                        yaw=float(rng.uniform(-3, 3)),
                        vx=float(rng.normal()),
                    )
                )
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(-20, 20, 2)
            pred.append(box(f"s{s}", float(x), float(y), str(rng.choice(["car", "pedestrian"])), float(rng.random())))
    return gt, pred


@pytest.mark.parametrize("seed", [0, 1])
def test_permuting_frames_does_not_change_the_metrics(seed: int) -> None:
    gt, pred = random_problem(seed)
    base = evaluate_detection(gt, pred)
    rng = np.random.default_rng(seed + 10)
    samples = sorted({r["sample"] for r in gt + pred})
    new_order = {s: k for k, s in enumerate(rng.permutation(samples))}
    permuted = evaluate_detection(
        sorted(gt, key=lambda r: new_order[r["sample"]]), sorted(pred, key=lambda r: new_order[r["sample"]])
    )
    assert permuted["mAP"] == pytest.approx(base["mAP"], abs=1e-12)
    assert permuted["NDS"] == pytest.approx(base["NDS"], abs=1e-12)


def test_scaling_every_score_keeps_ap() -> None:
    gt, pred = random_problem(3)
    base = evaluate_detection(gt, pred)
    scaled = evaluate_detection(gt, [dict(r, score=r["score"] * 0.37) for r in pred])
    for cls, aps in base["label_aps"].items():
        for th, ap in aps.items():
            assert scaled["label_aps"][cls][th] == pytest.approx(ap, abs=1e-12)


def test_arrays_and_records_agree() -> None:
    gt, pred = random_problem(4)

    def arrays(records: list[dict]) -> Detections:
        boxes = np.array(
            [[r["x"], r["y"], r["z"], r["l"], r["w"], r["h"], r["yaw"], r["vx"], r["vy"], 0.0] for r in records]
        )
        return Detections.from_arrays(
            [r["sample"] for r in records], boxes, [r["cls"] for r in records], [r["score"] for r in records]
        )

    assert evaluate_detection(arrays(gt), arrays(pred)) == evaluate_detection(gt, pred)


def test_metric_data_curves_have_101_points() -> None:
    gt, pred = random_problem(5)
    classes, data = detection_metric_data(gt, pred)
    md = data[(classes[0], 2.0)]
    assert len(md.recall) == len(md.precision) == len(md.confidence) == 101
    assert np.all(np.diff(md.confidence) <= 0)


def test_empty_predictions_give_zero_ap() -> None:
    result = evaluate_detection(grid_gt(), [])
    assert result["mAP"] == 0.0 and result["tp_errors"]["trans_err"] == 1.0


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{k: v for k, v in box("s0", 0, 0, score=0.5).items() if k != "score"}], "no field 'score'"),
        ([box("s0", float("nan"), 0, score=0.5)], "field 'x'"),
        ([box("s0", 0, 0, "truck", 0.5)], "class 'truck'"),
        ([box("s0", 0, 0, score=0.5, w=0.0)], "sizes"),
        ([box("s0", 0, 0, score="high")], "must be a number"),
    ],
)
def test_bad_predictions_are_named(records: list[dict], message: str) -> None:
    with pytest.raises(EvalInputError, match=message):
        evaluate_detection(grid_gt(), records, classes=["car"])


def test_empty_ground_truth_is_an_error() -> None:
    with pytest.raises(EvalInputError, match="no boxes"):
        evaluate_detection([], [box("s0", 0, 0, score=0.5)])


def test_cli_reports_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt_file, pred_file = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_file.write_text(json.dumps(grid_gt()))
    pred_file.write_text("")
    assert main(["detection", "--gt", str(gt_file), "--pred", str(pred_file)]) == 2
    assert "empty" in capsys.readouterr().err
    pred_file.write_text(json.dumps([box("s0", 0, 0, "truck", 0.5)]))
    assert main(["detection", "--gt", str(gt_file), "--pred", str(pred_file), "--classes", "car"]) == 2
    assert "--classes" in capsys.readouterr().err
    pred_file.write_text("[]")
    assert main(["detection", "--gt", str(gt_file), "--pred", str(pred_file)]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] == 0.0


@pytest.mark.parametrize("labels, expected_ap", [([0, 1], 1.0), ([1, 0], 0.0)])
def test_the_one_class_map_counts_a_box_on_the_spot_whatever_class_it_was_given(labels, expected_ap) -> None:
    # A person and a robot 5 m apart (beyond every distance threshold), each detected exactly on the spot, in two
    # frames. Labelled right, every AP is 1; labels swapped, each class's only detection sits 5 m from its only
    # GT (AP 0, so mAP 0) while the boxes, one class for all, still cover every GT at precision 1: AP 1.
    gt = np.zeros((2, 10), np.float32)
    gt[:, :3], gt[:, 3:6] = [[0.0, 0.0, 0.9], [5.0, 0.0, 0.3]], [[0.6, 0.6, 1.8], [0.9, 0.7, 0.5]]
    fields = {
        "distractors": None,
        "boxes": gt.copy(),
        "scores": np.array([0.8, 0.6], np.float32),
        "cls_scores": np.array([0.8, 0.6], np.float32),
        "labels": np.array(labels),
        "ids": np.array([0, 1]),
        "query_scores": np.array([0.8, 0.6], np.float32),
        "query_class_scores": np.array([[0.8, 0.1], [0.1, 0.6]], np.float32)[labels],
        "matched": np.array([True, True]),
        "matched_slots": np.array([0, 1]),
        "kept_slots": np.array([0, 1]),
    }
    collector = EvalCollector(["person", "nova_carter"], num_queries=2)
    collector.frames = [collector_frame(t, gt, **fields) for t in range(2)]
    metrics = collector.compute()
    assert metrics["mAP"] == pytest.approx(expected_ap, abs=1e-12)
    assert metrics["AP/person"] == metrics["AP/nova_carter"] == pytest.approx(expected_ap, abs=1e-12)
    assert metrics["mAP_agnostic"] == pytest.approx(1.0, abs=1e-12)
    assert collector.report["detection_one_class"]["mean_dist_aps"] == {"object": pytest.approx(1.0, abs=1e-12)}
