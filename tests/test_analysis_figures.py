"""Figures of a report: the per-frame artifact they read, and figures skipped (not failed) when data is missing.

That every figure is drawn from a real store is checked by test_analysis.py (end of a study).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from mlflow.entities import Metric
from test_analysis import CLASSES, synthetic_frames

from analysis.figures import FIGURES, draw_figures
from analysis.runs import RunRecord
from sparse4d_lab.eval.collector import EvalCollector, load_frames, save_frames
from sparse4d_lab.eval.figures import bev_frame


class LocalArtifacts:
    """Stands in for analysis.runs.Artifacts: runs' artifacts from local folders, histories from a dict."""

    def __init__(self, folders: dict, histories: dict):
        self.folders, self.histories = folders, histories

    def load(self, run_id, name, reader):
        path = self.folders.get(run_id, None)
        return reader(path / name) if path is not None and (path / name).exists() else None

    def evaluation(self, run_id):
        return self.load(run_id, "evaluation.json", lambda p: json.loads(p.read_text()))

    def history(self, run_id, key):
        return self.histories.get((run_id, key), [])


def test_eval_frames_round_trip_and_are_written_with_the_other_artifacts(tmp_path):
    frames = synthetic_frames(seed=0, inflated=True)
    frames[1]["distractors"] = None
    frames[2]["boxes"], frames[2]["scores"], frames[2]["cls_scores"], frames[2]["labels"], frames[2]["ids"] = (
        np.zeros((0, 10), np.float32),
        np.zeros(0, np.float32),
        np.zeros(0, np.float32),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
    )
    loaded, classes = load_frames(save_frames(frames, CLASSES, tmp_path / "f.npz"))
    assert classes == CLASSES and len(loaded) == len(frames)
    for before, after in zip(frames, loaded, strict=True):
        assert set(before) == set(after)
        assert (before["scene"], before["t"], before["sample"]) == (after["scene"], after["t"], after["sample"])
        assert (after["distractors"] is None) == (before["distractors"] is None)
        keys = ("gt_boxes", "gt_labels", "gt_ids", "boxes", "scores", "cls_scores", "labels", "ids", "matched")
        for key in (*keys, "kept_slots"):
            np.testing.assert_array_equal(after[key], before[key])
        for key in ("query_scores", "query_class_scores"):  # stored as float16
            np.testing.assert_allclose(after[key], before[key], atol=1e-3)
        assert after["query_class_scores"].shape == before["query_class_scores"].shape  # [queries, classes]
    assert loaded[2]["boxes"].shape == (0, 10) and loaded[2]["scores"].shape == (0,)
    assert bev_frame(loaded[2], classes, tmp_path / "empty.png").stat().st_size > 0  # no detections: still drawn

    collector = EvalCollector(CLASSES, num_queries=24)
    collector.frames = frames[:1]
    collector.compute("val")
    collector.frames = frames
    collector.compute("test")
    assert collector.bev_frames["val"] is frames[0] and collector.bev_frames["test"] is frames[len(frames) // 2]
    written = collector.write_artifacts(tmp_path / "job")
    names = ["evaluation.json", "query_scores.png", "bev_val_frame.png", "bev_test_frame.png", "eval_frames.npz"]
    assert [p.name for p in written] == names
    assert all(p.stat().st_size > 0 for p in written)


def test_a_figure_without_its_data_is_skipped_with_a_warning(tmp_path, caplog):
    runs = [
        RunRecord(
            arm, seed, "FINISHED", {"test/id_switches": 2.0 + seed, "test/spurious_tracks": 1.0}, run_id=f"{arm}{seed}"
        )
        for arm in ("a", "b")
        for seed in (0, 1)
    ]
    histories = {(r.run_id, "train/loss"): [Metric("train/loss", 1.0 / (s + 1), 0, s) for s in range(3)] for r in runs}
    with caplog.at_level(logging.WARNING, logger="analysis.figures"):
        written = draw_figures(runs, LocalArtifacts({}, histories), tmp_path)
    assert sorted(p.name for p in written) == [
        "tracking_errors.pdf",
        "tracking_errors.png",
        "training_curves.pdf",
        "training_curves.png",
    ]
    assert all(p.stat().st_size > 0 for p in written)
    skipped = {r.getMessage().split()[1] for r in caplog.records if "skipped" in r.getMessage()}
    assert skipped == set(FIGURES) - {"tracking_errors", "training_curves"}


@pytest.mark.parametrize("name", ["score_distributions", "bev_frames"])
def test_runs_without_frames_are_left_out_of_frame_figures(tmp_path, name):
    frames_dir = tmp_path / "with"
    frames_dir.mkdir()
    save_frames(synthetic_frames(seed=1, inflated=False), CLASSES, frames_dir / "eval_frames.npz")
    runs = [RunRecord("a", 0, "FINISHED", {}, run_id="has"), RunRecord("b", 0, "FINISHED", {}, run_id="lacks")]
    figure = FIGURES[name](runs, LocalArtifacts({"has": frames_dir}, {}))
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible() and ax.get_title()]
    assert len(titles) == 1 and titles[0].startswith("a")
