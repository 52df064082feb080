"""Time the evaluators on 10,000 frames x 100 boxes of synthetic tracking data and print the figures.

Scenes of objects moving on a warehouse-sized floor; the "tracker" reports each object with probability 0.9,
with centre noise, an occasional new id, a few false positives per frame and higher scores for true objects.
Usage: python benchmarks/bench_eval.py [--scenes 100] [--frames 100] [--objects 80] [--fps 28] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from experiments.resources import describe_machine
from sparse4d_lab.eval import Detections, Tracks, evaluate_detection, evaluate_tracking

CLASSES = ("person", "forklift", "pallet_jack", "robot")


def make_data(n_scenes: int, n_frames: int, n_objects: int, n_fp: int, seed: int) -> tuple[Tracks, Tracks]:
    """Ground-truth tracks and tracker output as arrays (box layout [x, y, z, l, w, h, yaw, vx, vy, vz])."""
    rng = np.random.default_rng(seed)
    n = n_scenes * n_objects
    start = rng.uniform(-50, 50, (n, 2))
    vel = rng.normal(0, 0.5, (n, 2))
    label = rng.integers(0, len(CLASSES), n)
    t = np.arange(n_frames)
    pos = start[:, None, :] + vel[:, None, :] * t[None, :, None] * 0.5  # [n, T, 2]
    scene = np.repeat(np.arange(n_scenes), n_objects)
    obj = np.tile(np.arange(n_objects), n_scenes)

    gt_xy = pos.reshape(-1, 2)
    gt_scene = np.repeat(scene, n_frames)
    gt_t = np.tile(t, n)
    gt_id = np.repeat(obj, n_frames)
    gt_label = np.repeat(label, n_frames)

    seen = rng.random(len(gt_xy)) < 0.9
    new_id = rng.random(len(gt_xy)) < 0.01
    id_offset = np.cumsum(new_id.reshape(n, n_frames), axis=1).reshape(-1)
    tp_id = 1_000_000 + gt_id * 1000 + id_offset
    tp_xy = gt_xy + rng.normal(0, 0.3, gt_xy.shape)
    tp_score = np.clip(rng.beta(5, 2, len(gt_xy)), 0, 1)

    n_false = n_scenes * n_frames * n_fp
    fp_scene = np.repeat(np.arange(n_scenes), n_frames * n_fp)
    fp_t = np.tile(np.repeat(t, n_fp), n_scenes)
    fp_xy = rng.uniform(-60, 60, (n_false, 2))
    fp_id = 2_000_000 + np.arange(n_false)  # one-box spurious tracks
    fp_label = rng.integers(0, len(CLASSES), n_false)
    fp_score = rng.beta(2, 5, n_false)

    def boxes(xy: np.ndarray) -> np.ndarray:
        b = np.zeros((len(xy), 10))
        b[:, :2] = xy
        b[:, 2] = 0.8
        b[:, 3:6] = (1.2, 0.8, 1.7)
        return b

    names = np.asarray(CLASSES)
    gt = Tracks.from_arrays(gt_scene, gt_t, gt_id, boxes(gt_xy), names[gt_label])
    pred = Tracks.from_arrays(
        np.r_[gt_scene[seen], fp_scene],
        np.r_[gt_t[seen], fp_t],
        np.r_[tp_id[seen], fp_id],
        boxes(np.r_[tp_xy[seen], fp_xy]),
        names[np.r_[gt_label[seen], fp_label]],
        np.r_[tp_score[seen], fp_score],
    )
    return gt, pred


def as_detections(tracks: Tracks, n_frames: int) -> Detections:
    sample = np.asarray(tracks.scene, np.int64) * n_frames + np.asarray(tracks.t, np.int64)
    return Detections(sample, tracks.boxes, tracks.label, tracks.score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--objects", type=int, default=80)
    parser.add_argument("--fps", type=int, default=28, help="false positives per frame")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(describe_machine())

    small_gt, small_pred = make_data(2, 5, 5, 2, args.seed)  # warm-up: imports and first-call costs
    evaluate_detection(as_detections(small_gt, 5), as_detections(small_pred, 5))
    evaluate_tracking(small_gt, small_pred)

    gt, pred = make_data(args.scenes, args.frames, args.objects, args.fps, args.seed)
    n_frames = args.scenes * args.frames
    print(
        f"frames: {n_frames}, ground-truth boxes: {len(gt)}, predicted boxes: {len(pred)} "
        f"({len(pred) / n_frames:.1f} per frame)"
    )

    det_gt, det_pred = as_detections(gt, args.frames), as_detections(pred, args.frames)
    c0, t0 = time.process_time(), time.perf_counter()
    det = evaluate_detection(det_gt, det_pred)
    c1, t1 = time.process_time(), time.perf_counter()
    trk = evaluate_tracking(gt, pred)
    c2, t2 = time.process_time(), time.perf_counter()

    print(f"detection: {t1 - t0:5.2f} s wall, {c1 - c0:5.2f} s CPU   mAP {det['mAP']:.4f}  NDS {det['NDS']:.4f}")
    print(
        f"tracking:  {t2 - t1:5.2f} s wall, {c2 - c1:5.2f} s CPU   MOTA {trk['clear']['mota']:.4f}  "
        f"IDF1 {trk['clear']['idf1']:.4f}  HOTA {trk['hota']['HOTA']:.4f}  "
        f"AMOTA {trk['nuscenes']['overall']['amota']:.4f}"
    )
    print(f"total:     {t2 - t0:5.2f} s wall, {c2 - c0:5.2f} s CPU (target: under 5 s)")


if __name__ == "__main__":
    main()
