"""Evaluation inputs: the plain records of the evaluation files, their validation, and their array form.

Records are JSON objects. A detection is `{sample, x, y, z, w, l, h, yaw, vx, vy, cls, score}`; a tracking record
adds `{scene, t, id}` (its frame is `(scene, t)`, so `sample` is optional there). Ground truth may omit `score`.
Validation names the offending record and field and says how to fix it, because evaluation files usually come
from other people's code.

The array form keeps boxes in the project's layout `[x, y, z, l, w, h, yaw, vx, vy, vz]` (``geometry``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._codes import factorize, positions_in

BOX_FIELDS = ("x", "y", "z", "l", "w", "h", "yaw", "vx", "vy")
DETECTION_FIELDS = ("sample", "x", "y", "z", "w", "l", "h", "yaw", "vx", "vy", "cls", "score")
TRACKING_FIELDS = ("scene", "t", "id", "x", "y", "z", "w", "l", "h", "yaw", "vx", "vy", "cls", "score")
REQUIRED_FIELDS = (
    "{" + ", ".join(DETECTION_FIELDS) + "} (tracking: scene, t and id instead of sample; ground truth: no score)"
)


class EvalInputError(ValueError):
    """Evaluation input that cannot be evaluated as given; the message names the record, the field and the fix."""


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """`np.asarray` that also accepts torch tensors (detached, moved to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


@dataclass(frozen=True)
class Detections:
    """Boxes of many frames as arrays.

    sample: [N] frame key (str or int); boxes: [N, 10] `[x, y, z, l, w, h, yaw, vx, vy, vz]`;
    label: [N] class name (str) or class index (int); score: [N] confidence (ignored for ground truth).
    """

    sample: np.ndarray
    boxes: np.ndarray
    label: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        for name in ("sample", "label"):
            object.__setattr__(self, name, as_numpy(getattr(self, name)))
        object.__setattr__(self, "score", as_numpy(self.score, float))
        n = _check_lengths(self, ("sample", "boxes", "label", "score"))
        object.__setattr__(self, "boxes", _box_array(self.boxes, n))
        _check_finite(self.boxes, "boxes")
        _check_finite(self.score, "score")

    def __len__(self) -> int:
        return len(self.sample)

    @property
    def xy(self) -> np.ndarray:
        return self.boxes[:, :2]

    @classmethod
    def from_arrays(cls, sample: Any, boxes: Any, label: Any, score: Any = None) -> Detections:
        """Build from array-likes (numpy or torch); `score` defaults to -1 (ground truth)."""
        boxes = as_numpy(boxes, float)
        n = len(boxes)
        return cls(
            sample=as_numpy(sample).reshape(n),
            boxes=boxes,
            label=as_numpy(label).reshape(n),
            score=np.full(n, -1.0) if score is None else as_numpy(score, float).reshape(n),
        )


@dataclass(frozen=True)
class Tracks:
    """Tracked boxes as arrays: scene [N], t [N] (time or frame index), track_id [N], then as `Detections`."""

    scene: np.ndarray
    t: np.ndarray
    track_id: np.ndarray
    boxes: np.ndarray
    label: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        for name in ("scene", "t", "track_id", "label"):
            object.__setattr__(self, name, as_numpy(getattr(self, name)))
        object.__setattr__(self, "score", as_numpy(self.score, float))
        n = _check_lengths(self, ("scene", "t", "track_id", "boxes", "label", "score"))
        object.__setattr__(self, "boxes", _box_array(self.boxes, n))
        _check_finite(self.boxes, "boxes")
        _check_finite(self.score, "score")
        _check_finite(np.asarray(self.t, float), "t")

    def __len__(self) -> int:
        return len(self.scene)

    @property
    def xy(self) -> np.ndarray:
        return self.boxes[:, :2]

    def select(self, mask: np.ndarray) -> Tracks:
        """The rows where `mask` holds (record order kept)."""
        return Tracks(
            self.scene[mask], self.t[mask], self.track_id[mask], self.boxes[mask], self.label[mask], self.score[mask]
        )

    @classmethod
    def from_arrays(cls, scene: Any, t: Any, track_id: Any, boxes: Any, label: Any, score: Any = None) -> Tracks:
        """Build from array-likes (numpy or torch); `score` defaults to -1 (ground truth)."""
        boxes = as_numpy(boxes, float)
        n = len(boxes)
        return cls(
            scene=as_numpy(scene).reshape(n),
            t=as_numpy(t).reshape(n),
            track_id=as_numpy(track_id).reshape(n),
            boxes=boxes,
            label=as_numpy(label).reshape(n),
            score=np.full(n, -1.0) if score is None else as_numpy(score, float).reshape(n),
        )


def _check_lengths(obj: Any, names: Sequence[str]) -> int:
    n = len(getattr(obj, names[0]))
    for name in names[1:]:
        if len(getattr(obj, name)) != n:
            raise EvalInputError(f"array '{name}' has {len(getattr(obj, name))} rows, '{names[0]}' has {n}")
    return n


def _box_array(boxes: Any, n: int) -> np.ndarray:
    boxes = as_numpy(boxes, float)
    if n == 0:
        return boxes.reshape(0, 10)
    if boxes.ndim != 2 or boxes.shape[1] not in (9, 10):
        raise EvalInputError(f"boxes must be [N, 10] = [x, y, z, l, w, h, yaw, vx, vy, vz], got shape {boxes.shape}")
    if boxes.shape[1] == 9:
        boxes = np.concatenate([boxes, np.zeros((n, 1))], axis=1)
    return boxes


def _check_finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(np.asarray(values, float))
    if bad.any():
        row = int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])
        raise EvalInputError(
            f"array '{name}' holds NaN or infinite values (first at row {row}); "
            "drop or repair those boxes before evaluating"
        )


# ----------------------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------------------


def load_records(path: str | Path, role: str) -> list[dict[str, Any]]:
    """Read a JSON list of records (`role` names the file in error messages, e.g. 'ground truth')."""
    path = Path(path)
    if not path.is_file():
        raise EvalInputError(f"{role} file {path} does not exist")
    text = path.read_text()
    if not text.strip():
        raise EvalInputError(f"{role} file {path} is empty; it must hold a JSON list of records")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise EvalInputError(f"{role} file {path} is not valid JSON ({err})") from err
    if isinstance(data, Mapping) and "results" in data:  # tolerate a {"results": [...]} wrapper
        data = data["results"]
    if not isinstance(data, list):
        raise EvalInputError(f"{role} file {path} must hold a JSON list of records, found {type(data).__name__}")
    return data


def _column(records: Sequence[Mapping[str, Any]], field: str, role: str, kind: str) -> np.ndarray:
    """One field of all records as an array, with a precise error for the first bad record."""
    try:
        values = [r[field] for r in records]
    except KeyError:
        i = next(i for i, r in enumerate(records) if field not in r)
        raise EvalInputError(
            f"{role} record {i} has no field '{field}' (record: {_short(records[i])}); every record needs "
            f"{REQUIRED_FIELDS}"
        ) from None
    except TypeError:
        i = next(i for i, r in enumerate(records) if not isinstance(r, Mapping))
        raise EvalInputError(f"{role} record {i} is not a JSON object: {_short(records[i])}") from None
    if kind == "number":
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            i = next(i for i, v in enumerate(values) if not _is_number(v))
            raise EvalInputError(f"{role} record {i}: field '{field}' must be a number, got {values[i]!r}") from None
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise EvalInputError(
                f"{role} record {i}: field '{field}' is {values[i]!r}; coordinates, sizes, velocities and scores "
                "must be finite numbers (drop the record or replace the value)"
            )
        return arr
    if kind == "key":  # sample, scene, id, cls: str or int, never mixed
        types = {type(v) for v in values}
        if len(types) > 1 or not types <= {str, int}:
            i = next(i for i, v in enumerate(values) if type(v) not in (str, int) or type(v) is not type(values[0]))
            raise EvalInputError(
                f"{role} record {i}: field '{field}' must be a string or an integer (the same type in every "
                f"record), got {values[i]!r}"
            )
        return np.asarray(values)
    raise AssertionError(kind)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _short(record: Any) -> str:
    text = json.dumps(record, default=str) if isinstance(record, Mapping) else repr(record)
    return text if len(text) <= 160 else text[:157] + "..."


def _boxes_from_records(records: Sequence[Mapping[str, Any]], role: str) -> np.ndarray:
    cols = [_column(records, f, role, "number") for f in BOX_FIELDS]
    boxes = np.zeros((len(records), 10))
    boxes[:, :9] = np.stack(cols, axis=1) if records else np.zeros((0, 9))
    return boxes


def _scores_from_records(records: Sequence[Mapping[str, Any]], role: str, gt: bool) -> np.ndarray:
    """Prediction scores; ground truth has none (any `score` field there is ignored)."""
    return np.full(len(records), -1.0) if gt else _column(records, "score", role, "number")


def detections_from_records(
    records: Sequence[Mapping[str, Any]], role: str = "prediction", gt: bool = False
) -> Detections:
    """Validate detection records and return them as arrays (record order kept)."""
    return Detections(
        sample=_column(records, "sample", role, "key"),
        boxes=_boxes_from_records(records, role),
        label=_column(records, "cls", role, "key"),
        score=_scores_from_records(records, role, gt),
    )


def tracks_from_records(records: Sequence[Mapping[str, Any]], role: str = "prediction", gt: bool = False) -> Tracks:
    """Validate tracking records and return them as arrays (record order kept)."""
    return Tracks(
        scene=_column(records, "scene", role, "key"),
        t=_column(records, "t", role, "number"),
        track_id=_column(records, "id", role, "key"),
        boxes=_boxes_from_records(records, role),
        label=_column(records, "cls", role, "key"),
        score=_scores_from_records(records, role, gt),
    )


def as_detections(data: Detections | Sequence[Mapping[str, Any]], role: str, gt: bool) -> Detections:
    """Accept either the array form or a list of records."""
    return data if isinstance(data, Detections) else detections_from_records(list(data), role, gt)


def as_tracks(data: Tracks | Sequence[Mapping[str, Any]], role: str, gt: bool) -> Tracks:
    """Accept either the array form or a list of records."""
    return data if isinstance(data, Tracks) else tracks_from_records(list(data), role, gt)


def class_codes(
    gt_labels: np.ndarray, pred_labels: np.ndarray, classes: Iterable[Any] | None, pred_role: str = "prediction"
) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The evaluated classes and the class index of every ground-truth and predicted record.

    Without a class list every class present in the ground truth or the predictions is evaluated (sorted).
    With one, a record of another class is an error rather than silently ignored: a typo in a class name would
    otherwise evaluate to an AP of zero without a word.
    """
    coded = [factorize(labels) for labels in (gt_labels, pred_labels)]
    if classes is None:
        classes = sorted(set(coded[0][1].tolist()) | set(coded[1][1].tolist()))
    else:
        classes = list(classes)
        if not classes:
            raise EvalInputError("the class list is empty; name at least one class")
        if len(set(classes)) != len(classes):
            raise EvalInputError(f"the class list {classes} names a class twice")
    codes = []
    for role, labels, (code, uniq) in zip(("ground truth", pred_role), (gt_labels, pred_labels), coded, strict=True):
        code = positions_in(code, uniq, classes)
        if (code < 0).any():
            i = int(np.flatnonzero(code < 0)[0])
            raise EvalInputError(
                f"{role} record {i} has class {np.asarray(labels)[i].item()!r}, which is not among the evaluated "
                f"classes {classes}; add it to the class list (--classes) or remove those records"
            )
        codes.append(code)
    return classes, codes[0], codes[1]


def shared_codes(a: np.ndarray, b: np.ndarray, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of two key arrays (e.g. ground-truth and predicted scenes) in one sorted code space."""
    a, b = np.asarray(a), np.asarray(b)
    if a.size and b.size and (a.dtype.kind in "US") != (b.dtype.kind in "US"):
        raise EvalInputError(f"field '{field}' is a string in one file and a number in the other; use one type")
    if not a.size:
        a = a.astype(b.dtype)
    if not b.size:
        b = b.astype(a.dtype)
    codes = factorize(np.concatenate([a, b]))[0]
    return codes[: len(a)], codes[len(a) :]


def finite_or_none(value: Any) -> Any:
    """JSON-safe copy of a result: NaN and infinities become null, numpy scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return finite_or_none(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
