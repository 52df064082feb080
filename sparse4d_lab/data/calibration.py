"""MTMC ``calibration.json``: every camera sensor's intrinsics and world -> camera extrinsics.

Two layouts are read. The synthetic MTMC_Tracking_2025 scenes give ``intrinsicMatrix`` (3x3) and
``extrinsicMatrix`` (3x4, OpenCV axes); the real-world scenes of AI City 2026 give only ``cameraMatrix``, the 3x4
projection ``K [R | t]`` up to a scale, which is split here by an RQ decomposition into ``K`` (positive diagonal,
``K[2, 2] = 1``) and a proper rotation ``R`` (det +1): the same pixels, and a pose the model can use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from .real import DataError


@dataclass(frozen=True)
class CameraCalibration:
    intrinsic: np.ndarray  # [3, 3]
    extrinsic: np.ndarray  # [4, 4] world -> camera
    frame_wh: tuple[int, int] | None  # (W, H) the intrinsics refer to, if the file says
    fps: float | None


def _matrix(value: Any, shape: tuple[int, int], where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=float).reshape(shape)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: expected a {shape[0]}x{shape[1]} matrix, got {value!r:.80}") from err
    if not np.isfinite(m).all():
        raise DataError(f"{where}: holds NaN or infinite values")
    return m


def decompose_camera_matrix(projection: np.ndarray, where: str = "cameraMatrix") -> tuple[np.ndarray, np.ndarray]:
    """A 3x4 projection at any nonzero scale -> (K [3, 3] with K[2, 2] = 1, world -> camera [4, 4]) such that
    ``K @ E[:3]`` is the projection divided by its scale; points in front of the camera get a positive depth."""
    left = projection[:, :3]
    det = np.linalg.det(left)
    if not abs(det) > 1e-12 * np.linalg.norm(left) ** 3:
        raise DataError(f"{where}: its left 3x3 block is singular, so it is no pinhole camera's projection")
    if det < 0:  # K has a positive determinant and R +1: the file's scale was negative
        projection = -projection
    k, r = scipy.linalg.rq(projection[:, :3])
    signs = np.sign(np.diag(k))  # RQ fixes K and R up to the signs of K's columns and R's rows
    k, r = k * signs, signs[:, None] * r
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = r, np.linalg.solve(k, projection[:, 3])
    return k / k[2, 2], extrinsic


def _sensor_matrices(sensor: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    if "intrinsicMatrix" in sensor and "extrinsicMatrix" in sensor:
        extrinsic = np.eye(4)
        extrinsic[:3] = _matrix(sensor["extrinsicMatrix"], (3, 4), f"{where} extrinsicMatrix")
        return _matrix(sensor["intrinsicMatrix"], (3, 3), f"{where} intrinsicMatrix"), extrinsic
    if "cameraMatrix" in sensor:
        return decompose_camera_matrix(_matrix(sensor["cameraMatrix"], (3, 4), f"{where} cameraMatrix"), where)
    raise DataError(f"{where}: has neither 'intrinsicMatrix' with 'extrinsicMatrix' nor 'cameraMatrix'")


def read_calibration(path: Path) -> dict[str, CameraCalibration]:
    """Camera id -> calibration, in file order; every camera sensor must give its matrices."""
    try:
        sensors = json.loads(path.read_bytes().decode("utf-8"))["sensors"]
    except FileNotFoundError:
        raise DataError(f"{path} is missing: every MTMC scene needs its calibration.json") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err}); save the calibration as UTF-8 JSON") from None
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not an MTMC calibration ({err}); expected {{'sensors': [...]}}") from err
    cameras: dict[str, CameraCalibration] = {}
    for i, sensor in enumerate(sensors):
        if str(sensor.get("type", "camera")).lower() != "camera":
            continue
        where = f"{path} sensor {i} ({sensor.get('id', '?')})"
        if "id" not in sensor:
            raise DataError(f"{where}: has no 'id'")
        intrinsic, extrinsic = _sensor_matrices(sensor, where)
        attributes = {a.get("name"): a.get("value") for a in sensor.get("attributes", []) if isinstance(a, dict)}
        try:
            width, height = attributes.get("frameWidth"), attributes.get("frameHeight")
            frame_wh = (int(float(width)), int(float(height))) if width and height else None
            fps = float(attributes["fps"]) if attributes.get("fps") else None
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: attribute frameWidth/frameHeight/fps is not a number ({err})") from err
        cameras[str(sensor["id"])] = CameraCalibration(intrinsic, extrinsic, frame_wh, fps)
    if not cameras:
        raise DataError(f"{path}: lists no camera sensor")
    return cameras
