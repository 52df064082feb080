"""Tracking metrics: hand-built switches and fragmentations, plain per-frame oracles of the association rules,
the nuScenes quirks, the record interface and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from records import collector_frame, track
from scipy.optimize import linear_sum_assignment

from sparse4d_lab.eval import (
    EvalInputError,
    TrackingFrames,
    Tracks,
    clear_mot,
    evaluate_tracking,
    id_stability,
    nuscenes_tracking,
    trackeval_metrics,
)
from sparse4d_lab.eval.collector import EvalCollector


def frames_of(*frames: tuple[list, list]) -> TrackingFrames:
    return TrackingFrames.from_frame_lists([{"gt": gt, "hyp": hyp} for gt, hyp in frames])


def test_switch_is_counted_once_and_breaks_id_stability() -> None:
    fr = frames_of(
        *[([[1, 0.0, 0.0]], [[10, 0.1, 0.0]]) for _ in range(3)],
        *[([[1, 0.0, 0.0]], [[20, 0.1, 0.0]]) for _ in range(2)],
    )
    m = clear_mot(fr)
    assert (m["num_switches"], m["num_matches"], m["num_misses"], m["num_false_positives"]) == (1, 4, 0, 0)
    assert m["mota"] == pytest.approx(1 - 1 / 5)
    assert m["idtp"] == 3 and m["idf1"] == pytest.approx(3 / 5)
    te = trackeval_metrics(fr)
    assert te["IDSW"] == 1 and te["CLR_TP"] == 5
    stab = id_stability(fr)
    assert stab["ids_per_gt_track"] == 2 and stab["gt_tracks_with_id_change"] == 1 and stab["spurious_tracks"] == 0


def test_fragmentation_and_track_ratios() -> None:
    seen, lost = ([[1, 0.0, 0.0]], [[10, 0.0, 0.0]]), ([[1, 0.0, 0.0]], [])
    fr = frames_of(seen, seen, lost, lost, seen)
    m = clear_mot(fr)
    assert m["num_fragmentations"] == 1 and m["num_switches"] == 0
    assert m["partially_tracked"] == 1 and m["mostly_tracked"] == 0
    # TrackEval skips timesteps without any tracker box, so continuity survives them: no fragmentation...
    assert trackeval_metrics(fr)["Frag"] == 0
    # ... unless the timestep is processed because another tracker box is present.
    lost_among_others = ([[1, 0.0, 0.0]], [[99, 50.0, 50.0]])
    assert trackeval_metrics(frames_of(seen, seen, lost_among_others, seen))["Frag"] == 1


def test_previous_pairing_is_kept_within_the_gate() -> None:
    # Object 1 is tracked by hyp 10; later hyp 20 comes closer but 10 is still within 2 m: no switch.
    fr = frames_of(([[1, 0.0, 0.0]], [[10, 0.5, 0.0]]), ([[1, 0.0, 0.0]], [[10, 1.5, 0.0], [20, 0.1, 0.0]]))
    m = clear_mot(fr)
    assert m["num_switches"] == 0 and m["num_false_positives"] == 1
    assert m["motp"] == pytest.approx((0.5 + 1.5) / 2)


def test_mota_is_not_clipped_and_gate_is_strict() -> None:
    fr = frames_of(([[1, 0.0, 0.0]], [[10, 2.0, 0.0], [11, 9.0, 0.0], [12, 19.0, 0.0]]))
    m = clear_mot(fr)
    assert m["num_matches"] == 0 and m["mota"] == pytest.approx(1 - 4 / 1)


def test_perfect_tracking() -> None:
    gt = [track("a", t, k, 10.0 * k + t, cls=c) for t in range(6) for k, c in enumerate(["car", "pedestrian"])]
    pred = [dict(r, id=100 + r["id"], score=0.9) for r in gt]
    result = evaluate_tracking(gt, pred)
    assert result["clear"]["mota"] == 1 and result["clear"]["idf1"] == 1 and result["clear"]["motp"] == 0
    assert result["hota"]["HOTA"] == pytest.approx(1) and result["hota"]["AssA"] == pytest.approx(1)
    overall = result["nuscenes"]["overall"]
    assert overall["amota"] == pytest.approx(1) and overall["motp"] == 0 and overall["ids"] == 0
    assert overall["amotp"] == 0 and overall["recall"] == 1
    assert result["id_stability"]["ids_per_gt_track"] == 1 and result["id_stability"]["spurious_tracks"] == 0


# ----------------------------------------------------------------------------------------------------------------
# Plain per-frame oracles of the two association rules, for random crowded problems
# ----------------------------------------------------------------------------------------------------------------


def _frame_distances(gt: list, hyp: list) -> np.ndarray:
    g = np.array([[r[1], r[2]] for r in gt]).reshape(-1, 2)
    h = np.array([[r[1], r[2]] for r in hyp]).reshape(-1, 2)
    return np.sqrt(((g[:, None, :] - h[None, :, :]) ** 2).sum(-1))


def oracle_motmetrics(frames: list[dict], gate: float = 2.0) -> tuple[int, int, float]:
    """(matches, switches, summed distance), frame by frame as py-motmetrics' MOTAccumulator.update."""
    last: dict = {}
    matches = switches = 0
    total = 0.0
    for fr in frames:
        oids, hids = [r[0] for r in fr["gt"]], [r[0] for r in fr["hyp"]]
        if not oids or not hids:
            continue
        d = _frame_distances(fr["gt"], fr["hyp"])
        d[d >= gate] = np.nan
        taken_o, taken_h = set(), set()
        for i, o in enumerate(oids):
            if o in last and last[o] in hids:
                j = hids.index(last[o])
                if j not in taken_h and np.isfinite(d[i, j]):
                    taken_o.add(i)
                    taken_h.add(j)
                    matches += 1
                    total += d[i, j]
        for i in taken_o:
            d[i, :] = np.nan
        for j in taken_h:
            d[:, j] = np.nan
        valid = np.isfinite(d)
        if valid.any():
            big = 2 * min(d.shape) * (np.abs(d[valid]).max() + 1) + 1
            rows, cols = linear_sum_assignment(np.where(valid, d, big))
            for i, j in zip(rows, cols, strict=True):
                if valid[i, j]:
                    if oids[i] in last and last[oids[i]] != hids[j]:
                        switches += 1
                    else:
                        matches += 1
                    total += d[i, j]
                    last[oids[i]] = hids[j]
    return matches, switches, total


def oracle_trackeval_clear(frames: list[dict], zero_distance: float = 4.0) -> tuple[int, int, int]:
    """(true positives, id switches, fragmentations) as TrackEval's CLEAR.eval_sequence."""
    prev_any: dict = {}
    prev_step: dict = {}
    starts: dict = {}
    tp = idsw = 0
    for fr in frames:
        oids, hids = [r[0] for r in fr["gt"]], [r[0] for r in fr["hyp"]]
        if not oids or not hids:
            continue
        sim = np.maximum(0, 1 - _frame_distances(fr["gt"], fr["hyp"]) / zero_distance)
        cont = np.array([[prev_step.get(o) == h for h in hids] for o in oids])
        score = 1000 * cont + sim
        score[sim < 0.5 - np.finfo(float).eps] = 0
        rows, cols = linear_sum_assignment(-score)
        now = {}
        for i, j in zip(rows, cols, strict=True):
            if score[i, j] > np.finfo(float).eps:
                o, h = oids[i], hids[j]
                tp += 1
                idsw += o in prev_any and prev_any[o] != h
                if o not in prev_step:
                    starts[o] = starts.get(o, 0) + 1
                prev_any[o] = h
                now[o] = h
        prev_step = now
    return tp, idsw, sum(n - 1 for n in starts.values())


def crowded_frames(seed: int, n_frames: int = 25) -> list[dict]:
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 6, (5, 2))
    ids = np.arange(5) + 100
    out = []
    for _ in range(n_frames):
        pos += rng.normal(0, 0.4, pos.shape)
        ids = np.where(rng.random(5) < 0.1, rng.integers(100, 140, 5), ids)
        gt = [[k, float(x), float(y)] for k, (x, y) in enumerate(pos) if rng.random() < 0.9]
        hyp = {}
        for k, (x, y) in enumerate(pos):
            if rng.random() < 0.8:
                hyp[int(ids[k])] = [int(ids[k]), float(x + rng.normal(0, 0.8)), float(y + rng.normal(0, 0.8))]
        for _ in range(rng.integers(0, 3)):
            h = int(rng.integers(200, 400))
            hyp[h] = [h, float(rng.uniform(0, 6)), float(rng.uniform(0, 6))]
        out.append({"gt": gt, "hyp": list(hyp.values())})
    return out


@pytest.mark.parametrize("seed", range(6))
def test_association_matches_per_frame_oracles(seed: int) -> None:
    frames = crowded_frames(seed)
    m = clear_mot(frames)
    matches, switches, total = oracle_motmetrics(frames)
    assert (m["num_matches"], m["num_switches"]) == (matches, switches)
    assert m["motp"] * (matches + switches) == pytest.approx(total, abs=1e-9)
    te = trackeval_metrics(frames)
    assert (te["CLR_TP"], te["IDSW"], te["Frag"]) == oracle_trackeval_clear(frames)


def two_sequences(a: list[dict], b: list[dict]) -> TrackingFrames:
    cols: dict[str, tuple[list, list, list]] = {"gt": ([], [], []), "hyp": ([], [], [])}
    for offset, seq in ((0, a), (len(a), b)):
        for k, fr in enumerate(seq):
            for role, (frame, ident, xy) in cols.items():
                for i, x, y in fr[role]:
                    frame.append(offset + k)
                    ident.append(i)
                    xy.append((x, y))
    gt, hyp = (
        [np.array(v).reshape(len(v), -1) if n == 2 else np.array(v) for n, v in enumerate(c)]
        for c in (cols["gt"], cols["hyp"])
    )
    return TrackingFrames.build([0] * len(a) + [1] * len(b), *gt, *hyp)


def test_sequences_combine_by_summing_counts() -> None:
    a, b = crowded_frames(1, 10), crowded_frames(2, 12)
    both = two_sequences(a, b)
    ma, mb, mab = clear_mot(a), clear_mot(b), clear_mot(both)
    for key in ("num_matches", "num_switches", "num_fragmentations", "idtp", "num_objects", "num_frames"):
        assert mab[key] == ma[key] + mb[key]
    assert mab["mota"] == pytest.approx(
        1 - (mab["num_misses"] + mab["num_switches"] + mab["num_false_positives"]) / mab["num_objects"]
    )
    ta, tb, tab = trackeval_metrics(a), trackeval_metrics(b), trackeval_metrics(both)
    assert tab["IDSW"] == ta["IDSW"] + tb["IDSW"] and tab["IDTP"] == ta["IDTP"] + tb["IDTP"]


# ----------------------------------------------------------------------------------------------------------------
# nuScenes tracking
# ----------------------------------------------------------------------------------------------------------------


def test_nuscenes_interpolation_uses_the_devkits_swapped_weights() -> None:
    # Ground truth seen at t=0 (x=0) and t=3 (x=30): the devkit fills t=1 at x=20 and t=2 at x=10.
    gt = [track("a", 0, 1, 0.0), track("a", 3, 1, 30.0)]
    pred = [track("a", t, 7, x, score=0.8) for t, x in ((0, 0.0), (1, 20.0), (2, 10.0), (3, 30.0))]
    overall = nuscenes_tracking(gt, pred)["overall"]
    assert (overall["gt"], overall["tp"], overall["fp"], overall["fn"]) == (4, 4, 0, 0)
    assert overall["motp"] == 0


def test_nuscenes_scores_are_averaged_per_track() -> None:
    gt = [track("a", t, k, 10.0 * k) for t in range(8) for k in range(3)]
    pred = [track("a", t, 50 + k, 10.0 * k + 0.3, score=0.2 + 0.25 * k) for t in range(8) for k in range(3)]
    shuffled = [dict(r) for r in pred]
    rng = np.random.default_rng(0)
    for k in range(3):  # same mean per track, different box scores
        boxes = [r for r in shuffled if r["id"] == 50 + k]
        noise = rng.normal(0, 0.05, len(boxes))
        for r, e in zip(boxes, noise - noise.mean(), strict=True):
            r["score"] = 0.2 + 0.25 * k + float(e)
    assert nuscenes_tracking(gt, shuffled)["overall"]["amota"] == pytest.approx(
        nuscenes_tracking(gt, pred)["overall"]["amota"], abs=1e-12
    )


def test_nuscenes_class_without_ground_truth_is_ignored() -> None:
    gt = [track("a", t, 1, 0.0) for t in range(5)]
    pred = [track("a", t, 9, 0.1, score=0.9) for t in range(5)] + [track("a", 0, 3, 40.0, cls="truck", score=0.5)]
    result = nuscenes_tracking(gt, pred)
    assert np.isnan(result["per_class"]["amota"]["truck"])
    assert result["overall"]["amota"] == result["per_class"]["amota"]["car"]


def test_nuscenes_class_without_matches_gets_the_worst_values() -> None:
    gt = [track("a", t, 1, 0.0) for t in range(5)]
    pred = [track("a", t, 9, 50.0, score=0.9) for t in range(5)]
    overall = nuscenes_tracking(gt, pred)["overall"]
    assert overall["amota"] == 0 and overall["amotp"] == 2 and overall["tid"] == 20 and overall["fn"] == 5


# ----------------------------------------------------------------------------------------------------------------
# Records, min-score and bad input
# ----------------------------------------------------------------------------------------------------------------


def random_records(seed: int) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for scene in ("s1", "s2"):
        for k in range(6):
            cls = ["car", "pedestrian"][k % 2]
            start = rng.uniform(0, 10, 2)
            for t in range(10):
                x, y = start + 0.3 * t
                gt.append(track(scene, t, k, float(x), float(y), cls))
                if rng.random() < 0.85:
                    pid = 100 * k + (t > 6 and k == 2)
                    pred.append(
                        track(
                            scene,
                            t,
                            pid,
                            float(x + rng.normal(0, 0.5)),
                            float(y + rng.normal(0, 0.5)),
                            cls,
                            float(rng.random()),
                        )
                    )
    pred.append(track("elsewhere", 0, 999, 0.0, score=0.9))  # a scene without ground truth
    return gt, pred


def test_records_evaluation_matches_the_frame_api() -> None:
    gt, pred = random_records(0)
    result = evaluate_tracking(gt, pred, min_score=0.3)
    kept = [r for r in pred if r["score"] >= 0.3]

    def as_tracks(records: list[dict]) -> Tracks:
        boxes = np.array(
            [[r["x"], r["y"], r["z"], r["l"], r["w"], r["h"], r["yaw"], r["vx"], r["vy"], 0.0] for r in records]
        )
        return Tracks.from_arrays(
            [r["scene"] for r in records],
            [r["t"] for r in records],
            [r["id"] for r in records],
            boxes,
            [r["cls"] for r in records],
            [r.get("score", -1.0) for r in records],
        )

    frames = TrackingFrames.from_tracks(as_tracks(gt), as_tracks(kept), ["car", "pedestrian"])
    direct = clear_mot(frames)
    for key in ("mota", "motp", "idf1", "num_switches", "num_false_positives", "num_fragmentations"):
        assert result["clear"][key] == pytest.approx(direct[key], abs=1e-12)
    assert result["hota"]["HOTA"] == pytest.approx(trackeval_metrics(frames)["HOTA"], abs=1e-12)
    assert result["nuscenes"] == nuscenes_tracking(gt, pred)


def test_duplicate_id_in_a_frame_is_an_error() -> None:
    gt = [track("a", 0, 1, 0.0), track("a", 0, 1, 5.0)]
    with pytest.raises(EvalInputError, match="once per frame"):
        evaluate_tracking(gt, [])
    with pytest.raises(EvalInputError, match="appears twice"):
        frames_of(([[1, 0.0, 0.0], [1, 1.0, 0.0]], []))


def test_missing_tracking_field_is_named() -> None:
    gt = [track("a", 0, 1, 0.0)]
    bad = [{k: v for k, v in track("a", 0, 1, 0.0, score=0.5).items() if k != "t"}]
    with pytest.raises(EvalInputError, match="no field 't'"):
        evaluate_tracking(gt, bad)


# ----------------------------------------------------------------------------------------------------------------
# The collector's tracking rule (eval.track_score)
# ----------------------------------------------------------------------------------------------------------------


def rule_frames() -> list[dict]:
    """Four frames of two still objects, each detected on the spot: a person tracked as id 0 (class 0.9, output
    0.8) and a robot at class score 0.25, output score 0.1 (a low centerness) whose id changes from 1 to 2."""
    gt = np.zeros((2, 10), np.float32)
    gt[:, :3], gt[:, 3:6] = [[0.0, 0.0, 0.9], [5.0, 0.0, 0.3]], [[0.6, 0.6, 1.8], [0.9, 0.7, 0.5]]
    return [
        collector_frame(
            t,
            gt,
            distractors=None,
            boxes=gt.copy(),
            scores=np.array([0.8, 0.1], np.float32),
            cls_scores=np.array([0.9, 0.25], np.float32),
            labels=np.array([0, 1]),
            ids=np.array([0, 1 if t < 2 else 2]),
            query_scores=np.array([0.9, 0.25, 0.01], np.float32),
            query_class_scores=np.array([[0.9, 0.1], [0.05, 0.25], [0.01, 0.0]], np.float32),
            matched=np.array([True, True, False]),
            matched_slots=np.array([0, 1]),
            kept_slots=np.array([0, 1]),
        )
        for t in range(4)
    ]


def rule_metrics(track_score: str, track_min_score: float) -> tuple[dict[str, float], dict]:
    collector = EvalCollector(
        ["person", "nova_carter"], track_min_score=track_min_score, track_score=track_score, num_queries=3
    )
    collector.frames = rule_frames()
    return collector.compute(), collector.report["tracking"]


def test_the_class_score_rule_tracks_a_detection_whose_output_score_is_below_the_threshold() -> None:
    # TAO's rule admits the robot (class 0.25 >= 0.2): 8 matches, its one switch, MOTA = 1 - 1/8; ids 0, 1, 2.
    metrics, report = rule_metrics("class", 0.2)
    assert metrics["id_switches"] == 1 and metrics["MOTA"] == pytest.approx(0.875)
    assert report["id_stability"]["num_pred_tracks"] == 3 and report["clear"]["num_misses"] == 0
    assert metrics["ids_best_mota"] == 1  # the devkit sees the robot's tracks too
    # The output-score rule drops the robot (0.1 < 0.2) from CLEAR: 4 matches and 4 misses, MOTA = 1 - 4/8 ...
    metrics, report = rule_metrics("output", 0.2)
    assert metrics["id_switches"] == 0 and metrics["MOTA"] == pytest.approx(0.5)
    assert report["id_stability"]["num_pred_tracks"] == 1 and report["clear"]["num_misses"] == 4
    assert metrics["ids_best_mota"] == 1  # ... while the devkit sweeps over every detection with an id


def test_the_class_score_rule_also_filters_the_nuscenes_input() -> None:
    # Above the robot's class score (0.25 < 0.3) it is no track anywhere: its class has no prediction (IDS NaN,
    # left out of the sum) and the person's track has no switch.
    metrics, report = rule_metrics("class", 0.3)
    assert metrics["id_switches"] == 0 and metrics["MOTA"] == pytest.approx(0.5) and metrics["ids_best_mota"] == 0
    per_class = report["nuscenes"]["per_class"]
    assert np.isnan(per_class["ids"]["nova_carter"]) and per_class["fn"]["nova_carter"] == 4


def test_an_unknown_track_score_is_named() -> None:
    with pytest.raises(ValueError, match=r"eval\.track_score must be one of class, output; got 'centerness'"):
        EvalCollector(["person"], track_score="centerness")
