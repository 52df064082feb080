"""The MTMC_Tracking_2025 formats that readers, the exporter and the AI City evaluation share: the class names,
camera ids, depth keys, the box convention and ``ground_truth.json``, without the scene loader's video and
calibration machinery.

``ground_truth.json``: ``{"<frame>": [{"object type", "object id", "3d location" (box centre), "3d bounding box
scale" [w, l, h], "3d bounding box rotation" [pitch, roll, yaw], "2d bounding box visible" {camera: [x1, y1, x2,
y2]}}]}``; keys may use underscores for spaces. ``w`` spans the object's x axis, ``l`` its y axis, and the object
faces its -y axis. The project's box has ``l`` along the heading, so a box maps exactly (same corners) as ``[x, y,
z, l=scale[1], w=scale[0], h, yaw - pi/2]`` (``boxes_from_mtmc``). Pitch and roll are not modelled (they are zero
for objects on the floor); boxes with either are counted as tilted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import default_cache_dir
from .real import DataError, wrap_angle

log = logging.getLogger(__name__)

GT_FORMAT = 1  # bump when the parsed ground-truth cache changes
# The "object type" names of the ground truth, in the order of the AI City class ids (PalletTruck: 2026 only).
MTMC_CLASSES: tuple[str, ...] = (
    "Person", "Forklift", "NovaCarter", "Transporter", "FourierGR1T2", "AgilityDigit", "PalletTruck",
)  # fmt: skip
DEPTH_KEY = "distance_to_image_plane_{frame:05d}.png"


def camera_name(index: int) -> str:
    """MTMC camera ids: ``Camera``, ``Camera_01``, ``Camera_02``, ..."""
    return "Camera" if index == 0 else f"Camera_{index:02d}"


def boxes_from_mtmc(location: np.ndarray, scale: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """MTMC centre, scale [w, l, h] and yaw -> project boxes ``[K, 7]`` (``[x, y, z, l, w, h, yaw]``)."""
    location, scale = np.asarray(location, float).reshape(-1, 3), np.asarray(scale, float).reshape(-1, 3)
    yaw = wrap_angle(np.asarray(yaw, float).reshape(-1) - math.pi / 2)
    return np.concatenate([location, scale[:, [1, 0, 2]], yaw[:, None]], axis=1)


def boxes_to_mtmc(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project boxes ``[K, >=7]`` -> MTMC (centre, scale [w, l, h], yaw): the inverse of ``boxes_from_mtmc``."""
    boxes = np.atleast_2d(np.asarray(boxes, float))
    return boxes[:, :3], boxes[:, [4, 3, 5]], wrap_angle(boxes[:, 6] + math.pi / 2)


# ----------------------------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class GroundTruth:
    """Every object row of a ground_truth.json as arrays; 2D boxes sparse (row, camera, box)."""

    frame: np.ndarray  # [K] source frame
    type: np.ndarray  # [K] raw class name
    id: np.ndarray  # [K]
    location: np.ndarray  # [K, 3]
    scale: np.ndarray  # [K, 3] (w, l, h)
    rotation: np.ndarray  # [K, 3] (pitch, roll, yaw)
    cameras: np.ndarray  # [C] camera ids named by the 2D boxes
    box_row: np.ndarray  # [B] row of each visible 2D box
    box_camera: np.ndarray  # [B] index into cameras
    box: np.ndarray  # [B, 4] x1, y1, x2, y2 (recorded pixels)

    @property
    def frames(self) -> np.ndarray:
        return np.unique(self.frame)

    @classmethod
    def empty(cls) -> GroundTruth:
        ints, names = np.zeros(0, np.int64), np.zeros(0, str)
        return cls(ints, names, ints, np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), names, ints, ints,
                   np.zeros((0, 4)))  # fmt: skip


def parse_ground_truth(path: Path) -> GroundTruth:
    """Every object of a ground_truth.json as arrays (no cache; see ``read_ground_truth``)."""
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err}); save the ground truth as UTF-8 JSON") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object {{frame: [objects]}}, found {type(data).__name__}")
    rows: list[tuple] = []
    boxes: list[tuple] = []
    cameras: dict[str, int] = {}
    for key, objects in data.items():
        try:
            frame = int(key)
        except ValueError:
            raise DataError(f"{path}: frame key {key!r} is not a frame number") from None
        for i, raw in enumerate(objects or []):
            obj = {str(k).replace("_", " "): v for k, v in raw.items()}
            try:
                loc, scale, rot = obj["3d location"], obj["3d bounding box scale"], obj["3d bounding box rotation"]
                row = (frame, str(obj["object type"]), int(obj["object id"]), *loc, *scale, *rot)
            except KeyError as err:
                raise DataError(
                    f"{path}: frame {key} object {i} has no {err}; each object needs 'object type', 'object id', "
                    "'3d location', '3d bounding box scale' and '3d bounding box rotation'"
                ) from None
            if len(row) != 12:
                raise DataError(f"{path}: frame {key} object {i}: location, scale and rotation need 3 values each")
            for cam, box in (obj.get("2d bounding box visible") or {}).items():
                boxes.append((len(rows), cameras.setdefault(str(cam), len(cameras)), *box))
            rows.append(row)
    table = np.asarray([r[3:] for r in rows], float).reshape(-1, 9)
    box_table = np.asarray(boxes, float).reshape(-1, 6)
    return GroundTruth(
        frame=np.asarray([r[0] for r in rows], np.int64),
        type=np.asarray([r[1] for r in rows], dtype=str),
        id=np.asarray([r[2] for r in rows], np.int64),
        location=table[:, 0:3],
        scale=table[:, 3:6],
        rotation=table[:, 6:9],
        cameras=np.asarray(list(cameras), dtype=str),
        box_row=box_table[:, 0].astype(np.int64),
        box_camera=box_table[:, 1].astype(np.int64),
        box=box_table[:, 2:6],
    )


def read_ground_truth(path: Path, cache_dir: str | Path | None = None) -> GroundTruth:
    """Parse a ground_truth.json, through an ``.npz`` cache in ``cache_dir`` (keyed by path, size and mtime)."""
    stat = path.stat()
    key = hashlib.sha256(f"{GT_FORMAT}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "mtmc-gt" / f"{key[:24]}.npz"
    if cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return GroundTruth(**{k: z[k] for k in z.files})
        except (OSError, ValueError, TypeError):
            log.warning("ground-truth cache %s is unreadable: parsing %s again", cache, path)
    gt = parse_ground_truth(path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **vars(gt))
    tmp.replace(cache)  # atomic: concurrent jobs never read a half-written cache
    return gt
