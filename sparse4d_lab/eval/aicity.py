"""AI City 2025 track 1 (multi-camera 3D tracking): the submission file and its 3D HOTA.

A submission (``track1.txt``) holds one box per line: ``scene_id class_id object_id frame_id x y z width length
height yaw``, with class ids Person 0, Forklift 1, NovaCarter 2, Transporter 3, FourierGR1T2 4, AgilityDigit 5
(PalletTruck 6 in AI City 2026), object ids positive and unique per scene and class, frame ids zero-based, the box
as in the MTMC ground truth (centre, width along the object's x axis, length along its y axis, yaw in radians; see
``data.mtmc``).

The challenge scores 3D HOTA: TrackEval's HOTA per (scene, class) sequence with the 3D IoU of the boxes as the
similarity, the sequences combined as TrackEval combines them. ``evaluate_aicity`` reports it combined over every
sequence (``HOTA``, TrackEval's detection-averaged class combination) and as the mean over classes
(``HOTA_class_mean``, its class-averaged one), with per-class and per-scene figures. The boxes' yaw is used (rotated
IoU, ``geometry.iou_3d``); pitch and roll are not part of the format.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import geometry
from ..data.mtmc_format import MTMC_CLASSES, boxes_from_mtmc, boxes_to_mtmc, parse_ground_truth
from ..data.real import DataError, class_key
from ._association import Pairs
from ._ops import neighbour_pairs
from .records import EvalInputError, Tracks
from .trackeval import hota_combine, hota_per_sequence
from .tracking_frames import TrackingFrames
from .tracking_input import encode_tracking

AICITY_CLASSES = MTMC_CLASSES  # class id = index
# Other spellings of the same classes (the project's names match the AI City ones up to case and underscores).
_ALIASES = {"gr1t2": "FourierGR1T2"}
HOTA_FIELDS = ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")


def aicity_class(name: Any) -> str:
    """The AI City name of a class given under any of its names (``fourier_gr1_t2``, ``gr1_t2``, ...)."""
    key = class_key(name)
    for cls in AICITY_CLASSES:
        if class_key(cls) == key:
            return cls
    if key in _ALIASES:
        return _ALIASES[key]
    raise EvalInputError(f"class {name!r} has no AI City class id; the classes are {list(AICITY_CLASSES)}")


def scene_number(name: Any) -> int:
    """A scene's AI City id from its name: the trailing number (``Warehouse_017`` -> 17)."""
    if isinstance(name, (int, np.integer)):
        return int(name)
    match = re.search(r"(\d+)\s*$", str(name))
    if match is None:
        raise EvalInputError(
            f"scene {name!r} has no trailing number to use as its scene id; give the id (--gt ID=PATH on the "
            "command line, scene_ids to write_submission)"
        )
    return int(match.group(1))


# ----------------------------------------------------------------------------------------------------------------
# Submission files
# ----------------------------------------------------------------------------------------------------------------


def write_submission(
    tracks: Tracks,
    path: str | Path,
    scene_ids: Mapping[Any, int] | None = None,
    frame_ids: Mapping[Any, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """Write tracked boxes as an AI City submission; returns ``{"lines", "renumbered"}``.

    ``tracks.label`` holds class names (project or AI City spelling); ``scene_ids`` maps each scene to its AI City
    id (default: the trailing number of its name); ``frame_ids`` maps each scene to the source frame number of
    every ``t`` (``SceneData.frame_ids``, needed when frames were strided; default: ``t`` itself). Track ids that
    are not all positive integers are renumbered 1, 2, ... per scene and class in order of appearance (HOTA does
    not depend on the numbers).
    """
    n = len(tracks)
    scenes = tracks.scene
    try:
        scene_id = np.asarray([scene_ids[s] if scene_ids is not None else scene_number(s) for s in scenes], np.int64)
    except KeyError as err:
        raise EvalInputError(f"scene {err.args[0]!r} is not in scene_ids") from None
    if len(set(scenes.tolist())) != len(set(scene_id.tolist())):
        raise EvalInputError("two scenes map to the same scene id; pass scene_ids to tell them apart")
    if tracks.label.dtype.kind not in "UO":
        raise EvalInputError("tracks.label must hold class names (e.g. 'person'), not indices")
    class_id = np.asarray([AICITY_CLASSES.index(aicity_class(c)) for c in tracks.label], np.int64)
    t = np.asarray(tracks.t)
    if frame_ids is not None:
        frame = np.asarray([frame_ids[s][int(k)] for s, k in zip(scenes, t, strict=True)], np.int64)
    else:
        if n and not np.all(np.asarray(t, float) == np.round(np.asarray(t, float))):
            raise EvalInputError("tracks.t must be frame numbers; pass frame_ids to map frame indices to them")
        frame = np.asarray(t, float).astype(np.int64)
    ids = tracks.track_id
    numeric = ids.dtype.kind in "iu" or (ids.dtype.kind == "f" and np.all(ids == np.round(ids)))
    renumber = not (numeric and (n == 0 or ids.astype(np.int64).min() >= 1))
    order = np.lexsort((class_id, frame, scene_id))
    if renumber:
        object_id = np.zeros(n, np.int64)
        numbers: dict[tuple, int] = {}
        per_group: Counter = Counter()
        for r in order:
            group = (scene_id[r], class_id[r])
            key = (*group, ids[r].item())
            if key not in numbers:
                per_group[group] += 1
                numbers[key] = per_group[group]
            object_id[r] = numbers[key]
    else:
        object_id = ids.astype(np.int64)
    location, scale, yaw = boxes_to_mtmc(tracks.boxes)
    order = np.lexsort((object_id, class_id, frame, scene_id))
    lines = [
        f"{scene_id[r]} {class_id[r]} {object_id[r]} {frame[r]} "
        + " ".join(f"{v:.6f}" for v in (*location[r], *scale[r], yaw[r]))
        for r in order
    ]
    Path(path).write_text("\n".join(lines) + ("\n" if lines else ""))
    return {"lines": n, "renumbered": renumber}


def _integer(value: str, what: str, where: str, minimum: int) -> int:
    try:
        number = float(value)
    except ValueError:
        raise EvalInputError(f"{where}: {what} {value!r} is not a number") from None
    if not number.is_integer() or number < minimum:
        raise EvalInputError(f"{where}: {what} must be an integer >= {minimum}, got {value}")
    return int(number)


def read_submission(path: str | Path) -> Tracks:
    """Read a submission file back into tracks (scene = AI City scene id, t = frame id, AI City class names)."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"submission file {path} does not exist")
    rows, meta = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        where = f"{path} line {number}"
        if len(fields) != 11:
            raise EvalInputError(
                f"{where}: {len(fields)} fields; expected 11: scene_id class_id object_id frame_id x y z width "
                "length height yaw"
            )
        cls = _integer(fields[1], "class_id", where, 0)
        if cls >= len(AICITY_CLASSES):
            raise EvalInputError(f"{where}: class_id {cls} is not one of 0..{len(AICITY_CLASSES) - 1}")
        meta.append((_integer(fields[0], "scene_id", where, 0), cls, _integer(fields[2], "object_id", where, 1),
                     _integer(fields[3], "frame_id", where, 0)))  # fmt: skip
        try:
            values = [float(v) for v in fields[4:]]
        except ValueError:
            raise EvalInputError(f"{where}: x y z width length height yaw must be numbers") from None
        if not all(math.isfinite(v) for v in values):
            raise EvalInputError(f"{where}: holds NaN or infinite values")
        rows.append(values)
    table = np.asarray(rows, float).reshape(-1, 7)
    info = np.asarray(meta, np.int64).reshape(-1, 4)
    boxes = np.zeros((len(table), 10))
    boxes[:, :7] = boxes_from_mtmc(table[:, 0:3], table[:, 3:6], table[:, 6])
    return Tracks.from_arrays(
        scene=info[:, 0],
        t=info[:, 3],
        track_id=info[:, 2],
        boxes=boxes,
        label=np.asarray([AICITY_CLASSES[c] for c in info[:, 1]], dtype=str).reshape(-1),
    )


def ground_truth_tracks(path: str | Path, scene_id: int) -> Tracks:
    """An MTMC ground_truth.json as tracks of scene ``scene_id`` (AI City class names)."""
    try:
        gt = parse_ground_truth(Path(path))
    except (DataError, OSError) as err:
        raise EvalInputError(str(err)) from err
    boxes = np.zeros((len(gt.frame), 10))
    boxes[:, :7] = boxes_from_mtmc(gt.location, gt.scale, gt.rotation[:, 2])
    return Tracks.from_arrays(
        scene=np.full(len(gt.frame), scene_id, np.int64),
        t=gt.frame,
        track_id=gt.id,
        boxes=boxes,
        label=np.asarray([aicity_class(c) for c in gt.type], dtype=str).reshape(-1),
    )


# ----------------------------------------------------------------------------------------------------------------
# 3D HOTA
# ----------------------------------------------------------------------------------------------------------------


def _iou_pairs(frames: TrackingFrames, gt_boxes: np.ndarray, pred_boxes: np.ndarray) -> Pairs:
    """Same-frame pairs with a positive 3D IoU, as distances ``1 - IoU`` (HOTA's similarity at zero distance 1)."""
    if not len(gt_boxes) or not len(pred_boxes):
        return Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    # Boxes overlap only if their centres are closer than the sum of their footprints' half diagonals.
    reach = 0.5 * (np.hypot(gt_boxes[:, 3], gt_boxes[:, 4]).max() + np.hypot(pred_boxes[:, 3], pred_boxes[:, 4]).max())
    ig, ih, _ = neighbour_pairs(frames.gt_frame, frames.gt_xy, frames.hyp_frame, frames.hyp_xy, reach)
    iou = geometry.iou_3d(torch.from_numpy(gt_boxes[ig]), torch.from_numpy(pred_boxes[ih]), aligned=True).numpy()
    keep = iou > 0
    return Pairs(ig[keep], ih[keep], 1.0 - iou[keep])


def _summary(combined: Mapping[str, Any]) -> dict[str, float]:
    out = {f: float(np.mean(combined[f])) for f in HOTA_FIELDS}
    out.update({"HOTA(0)": float(combined["HOTA(0)"]), "LocA(0)": float(combined["LocA(0)"])})
    return out


def evaluate_aicity(gt: Tracks, pred: Tracks, classes: Iterable[str] | None = None) -> dict[str, Any]:
    """3D HOTA of ``pred`` against ``gt`` per scene and class (both with AI City class names, t = frame id)."""
    if len(gt) == 0:
        raise EvalInputError("the ground truth holds no boxes: there is nothing to evaluate against")
    classes = None if classes is None else [aicity_class(c) for c in classes]
    # Object ids are unique per scene and class only: a track is (class, id).
    gt, pred = (
        Tracks(t.scene, t.t, np.char.add(np.char.add(t.label.astype(str), "#"), t.track_id.astype(str)), t.boxes,
               t.label, t.score)
        for t in (gt, pred)
    )  # fmt: skip
    inp = encode_tracking(gt, pred, classes)
    frames = TrackingFrames.from_tracks(inp)
    frames.adopt_pairs(1.0, _iou_pairs(frames, gt.boxes, pred.boxes))
    per_seq = hota_per_sequence(frames, zero_distance=1.0)
    n_cls = len(inp.classes)
    scene_values = np.unique(np.concatenate([np.asarray(gt.scene), np.asarray(pred.scene)]))
    gt_count = np.bincount(frames.frame_seq[frames.gt_frame], minlength=len(per_seq["HOTA_TP"]))
    pred_count = np.bincount(frames.frame_seq[frames.hyp_frame], minlength=len(per_seq["HOTA_TP"]))
    used = np.flatnonzero(gt_count + pred_count > 0)

    def combine(rows: np.ndarray) -> dict[str, Any]:
        return hota_combine({k: v[rows] for k, v in per_seq.items()})

    per_class, class_arrays = {}, []
    for k, cls in enumerate(inp.classes):
        rows = used[used % n_cls == k]
        if len(rows):
            combined = combine(rows)
            class_arrays.append(combined)
            per_class[cls] = {**_summary(combined), "gt_boxes": int(gt_count[rows].sum()),
                              "pred_boxes": int(pred_count[rows].sum())}  # fmt: skip
    per_scene: dict[str, dict[str, Any]] = {}
    for seq in used:
        scene, cls = scene_values[seq // n_cls].item(), inp.classes[seq % n_cls]
        per_scene.setdefault(str(scene), {})[cls] = _summary(combine(np.asarray([seq])))
    overall = _summary(combine(used))
    class_mean = {f: float(np.mean([np.mean(c[f]) for c in class_arrays])) for f in ("HOTA", "DetA", "AssA", "LocA")}
    return {
        **overall,
        **{f"{f}_class_mean": v for f, v in class_mean.items()},
        "per_class": per_class,
        "per_scene": per_scene,
        "num_gt_boxes": len(gt),
        "num_pred_boxes": len(pred),
    }
