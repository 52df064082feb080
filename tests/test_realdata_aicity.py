"""AI City 2025 track-1 files: the submission writer and reader, and the 3D HOTA of the `aicity` command."""

import json
import math

import numpy as np
import pytest

from sparse4d_lab.data import WarehouseConfig, render_scene
from sparse4d_lab.data.export import export_mtmc
from sparse4d_lab.eval.__main__ import main as eval_cli
from sparse4d_lab.eval.__main__ import run as eval_run
from sparse4d_lab.eval.aicity import (
    evaluate_aicity,
    ground_truth_tracks,
    read_submission,
    write_submission,
)
from sparse4d_lab.eval.records import EvalInputError, Tracks

CFG = WarehouseConfig(scenes={"val": 1}, frames_per_scene=5, image_size=(96, 64), num_cameras=2)


@pytest.fixture(scope="module")
def scene():
    return render_scene(CFG, "val", 0)


def scene_tracks(scene, name="Warehouse_007", id_offset=1) -> Tracks:
    """A scene's ground truth as tracks with the project's class names (what the model's tracker outputs)."""
    t = np.repeat(np.arange(scene.num_frames), np.diff(scene.frame_offsets))
    classes = np.asarray(["person", "fourier_gr1_t2", "agility_digit", "nova_carter"])
    return Tracks.from_arrays([name] * len(t), t, scene.ids + id_offset, scene.boxes, classes[scene.labels])


def unit_tracks(ids, shift=0.0, label="Person") -> Tracks:
    boxes = np.zeros((len(ids), 10))
    boxes[:, 3:6] = 1.0
    boxes[:, 0] = shift
    return Tracks.from_arrays([3] * len(ids), np.arange(len(ids)), ids, boxes, [label] * len(ids))


def test_submission_round_trip(scene, tmp_path):
    tracks = scene_tracks(scene)
    path = tmp_path / "track1.txt"
    assert write_submission(tracks, path) == {"lines": len(tracks), "renumbered": False}
    first = path.read_text().splitlines()[0].split()
    assert len(first) == 11 and first[0] == "7"  # the scene id is the trailing number of the scene name
    back = read_submission(path)
    names = {"person": "Person", "fourier_gr1_t2": "FourierGR1T2", "agility_digit": "AgilityDigit",
             "nova_carter": "NovaCarter"}  # fmt: skip
    order = np.lexsort((tracks.track_id, tracks.t))
    back_order = np.lexsort((back.track_id, back.t))
    assert np.all(back.scene == 7)
    np.testing.assert_array_equal(back.t[back_order], tracks.t[order])
    np.testing.assert_array_equal(back.track_id[back_order], tracks.track_id[order])
    assert back.label[back_order].tolist() == [names[c] for c in tracks.label[order]]
    got, want = back.boxes[back_order], tracks.boxes[order]
    np.testing.assert_allclose(got[:, :6], want[:, :6], atol=1e-5)
    assert np.abs(np.remainder(got[:, 6] - want[:, 6] + math.pi, 2 * math.pi) - math.pi).max() < 1e-5


def test_submission_maps_frames_and_renumbers_ids(scene, tmp_path):
    tracks = scene_tracks(scene, id_offset=0)  # ids from 0: not positive, so renumbered per scene and class
    frame_ids = {"Warehouse_007": np.arange(scene.num_frames) * 30 + 5}  # every 30th frame from 5
    info = write_submission(tracks, tmp_path / "t.txt", scene_ids={"Warehouse_007": 12}, frame_ids=frame_ids)
    assert info["renumbered"]
    back = read_submission(tmp_path / "t.txt")
    assert set(back.scene.tolist()) == {12} and set(back.t.tolist()) == set((np.arange(5) * 30 + 5).tolist())
    assert back.track_id.min() == 1
    # Rows matched by frame and position: each object keeps one number, and objects of a class keep distinct ones.
    new_id = {(int(t), round(float(x), 4)): (c, int(i)) for t, x, c, i in zip(back.t, back.boxes[:, 0], back.label,
                                                                              back.track_id, strict=True)}  # fmt: skip
    mapping = {}
    for t, x, i in zip(tracks.t, tracks.boxes[:, 0], tracks.track_id, strict=True):
        mapping.setdefault(int(i), set()).add(new_id[(int(t) * 30 + 5, round(float(x), 4))])
    assert all(len(v) == 1 for v in mapping.values())
    assert len({next(iter(v)) for v in mapping.values()}) == len(mapping)


def test_hota_matches_hand_computed_values():
    gt = unit_tracks([1, 1])
    assert evaluate_aicity(gt, unit_tracks([1, 1]))["HOTA"] == pytest.approx(1.0)
    # One id switch over two frames: every detection matched (DetA 1), each match shares half its id (AssA 1/2).
    switched = evaluate_aicity(gt, unit_tracks([1, 2]))
    assert switched["DetA"] == pytest.approx(1.0) and switched["HOTA"] == pytest.approx(math.sqrt(0.5))
    # Shifted by a third of the size: 3D IoU (2/3) / (4/3) = 0.5, a match for alpha 0.05 ... 0.5 (10 of 19).
    shifted = evaluate_aicity(gt, unit_tracks([1, 1], shift=1 / 3))
    assert shifted["HOTA"] == pytest.approx(10 / 19) and shifted["HOTA(0)"] == pytest.approx(1.0)
    assert shifted["per_class"]["Person"]["gt_boxes"] == 2
    # A prediction of another class matches nothing; classes average over the classes present.
    other = evaluate_aicity(gt, unit_tracks([1, 1], label="NovaCarter"))
    assert other["HOTA"] == 0.0 and set(other["per_class"]) == {"Person", "NovaCarter"}


def test_aicity_command_scores_a_submission_against_ground_truth(scene, tmp_path):
    export_mtmc([scene], tmp_path / "mtmc", "val")
    gt_path = tmp_path / "mtmc" / "val" / "val_0000" / "ground_truth.json"
    gt = ground_truth_tracks(gt_path, 0)
    assert len(gt) == len(scene.ids) and set(gt.label.tolist()) <= {"Person", "FourierGR1T2", "AgilityDigit",
                                                                      "NovaCarter"}  # fmt: skip
    perfect = tmp_path / "perfect.txt"
    write_submission(gt, perfect)
    result = eval_run(["aicity", "--gt", str(gt_path), "--pred", str(perfect)])
    assert result["HOTA"] == pytest.approx(1.0) and result["per_scene"]["0"]
    # Swap the ids of the longest track from frame 2 on: detection stays perfect, association drops.
    swapped = gt.track_id.copy()
    longest = np.bincount(swapped - swapped.min()).argmax() + swapped.min()
    swapped[(gt.track_id == longest) & (gt.t >= 2)] = 999
    other = Tracks(np.r_[gt.scene, 5], np.r_[gt.t, 0], np.r_[swapped, 1], np.r_[gt.boxes, gt.boxes[:1]],
                   np.r_[gt.label, gt.label[:1]], np.r_[gt.score, -1.0])  # fmt: skip
    write_submission(other, tmp_path / "swapped.txt")
    result = eval_run(["aicity", "--gt", f"0={gt_path}", "--pred", str(tmp_path / "swapped.txt")])
    assert result["DetA"] == pytest.approx(1.0) and result["AssA"] < 1.0 and result["HOTA"] < 1.0
    assert result["pred_boxes_of_other_scenes"] == 1  # scene 5 has no ground truth here
    json.dumps(result)


def test_bad_submissions_are_refused_naming_the_line(tmp_path, capsys):
    path = tmp_path / "bad.txt"
    path.write_text("0 0 1 0 1 2 0.5 1 1 1.8 0\n0 9 1 1 1 2 0.5 1 1 1.8 0\n")
    with pytest.raises(EvalInputError, match=r"bad\.txt line 2: class_id 9 is not one of 0\.\.6"):
        read_submission(path)
    path.write_text("0 0 0 0 1 2 0.5 1 1 1.8 0\n")
    with pytest.raises(EvalInputError, match=r"line 1: object_id must be an integer >= 1"):
        read_submission(path)
    path.write_text("0 0 1 0 1 2 0.5 1 1 1.8\n")
    assert eval_cli(["aicity", "--gt", str(path), "--pred", str(path)]) == 2
    assert "10 fields; expected 11" in capsys.readouterr().err
