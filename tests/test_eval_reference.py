"""Every number of the reference fixture (nuscenes-devkit 1.2.0, py-motmetrics 1.4.0, TrackEval 1.0.0) to 1e-9."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from sparse4d_lab.eval import TrackingFrames, clear_mot, evaluate_detection, nuscenes_tracking, trackeval_metrics
from sparse4d_lab.eval.__main__ import main

REFERENCE = Path(__file__).parent / "fixtures"  # a copy of the shared reference: see fixtures/README.md


@pytest.fixture(scope="module")
def inputs() -> dict:
    return json.loads((REFERENCE / "metrics_inputs.json").read_text())


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((REFERENCE / "metrics_expected.json").read_text())


def assert_close(actual: object, wanted: object, path: str = "") -> None:
    """Every leaf of `wanted` is in `actual` within 1e-9 (NaN matches NaN or null)."""
    if isinstance(wanted, dict):
        assert isinstance(actual, dict), path
        for key, value in wanted.items():
            assert key in actual, f"missing {path}/{key}"
            assert_close(actual[key], value, f"{path}/{key}")
        return
    if wanted is None or (isinstance(wanted, float) and math.isnan(wanted)):
        assert actual is None or math.isnan(actual), path
        return
    assert actual == pytest.approx(wanted, abs=1e-9, rel=0), path


def test_detection_block(inputs: dict, expected: dict) -> None:
    result = evaluate_detection(inputs["gts"], inputs["dets"])
    assert_close(result, expected["detection"])
    assert set(result) == set(expected["detection"])


def test_motmetrics_block(inputs: dict, expected: dict) -> None:
    assert_close(clear_mot(TrackingFrames.from_frame_lists(inputs["frames"]), gate=2.0), expected["mot"])


def test_trackeval_block(inputs: dict, expected: dict) -> None:
    assert_close(trackeval_metrics(inputs["frames"], zero_distance=4.0, threshold=0.5), expected["trackeval"])


def test_nuscenes_tracking_block(inputs: dict, expected: dict) -> None:
    assert_close(nuscenes_tracking(inputs["track_gts"], inputs["track_preds"]), expected["nuscenes_tracking"])


def test_cli_detection_prints_the_detection_block(
    inputs: dict, expected: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(inputs["gts"]))
    (tmp_path / "pred.json").write_text(json.dumps(inputs["dets"]))
    assert main(["detection", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")]) == 0
    assert_close(json.loads(capsys.readouterr().out), expected["detection"])


def test_cli_tracking_blocks(inputs: dict, expected: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gt.json").write_text(json.dumps(inputs["track_gts"]))
    (tmp_path / "pred.json").write_text(json.dumps(inputs["track_preds"]))
    assert main(["tracking", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"clear", "hota", "nuscenes", "id_stability"}
    assert_close(out["nuscenes"], expected["nuscenes_tracking"])
    assert {"mota", "motp", "idf1", "num_switches", "num_fragmentations"} <= set(out["clear"])
    assert {"HOTA", "DetA", "AssA", "LocA"} <= set(out["hota"])
