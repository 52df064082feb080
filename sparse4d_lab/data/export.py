"""Write scenes (the synthetic warehouse) in the MTMC_Tracking_2025 layout and as TAO OVPKL files.

The readers are then tested on real files of both kinds without the real data, and the synthetic warehouse can be
fed to tools that speak these formats (TAO). The writers follow the readers' format notes (``mtmc``, ``ovpkl``):
MTMC scenes get H.264 videos, calibration.json, ground_truth.json (with each object's visible 2D box per camera),
PNG-in-HDF5 depth maps and a map.png; OVPKL gets one pickle per scene and one HDF5 file per camera with JPEG
frames and PNG depth maps, in TAO's conventions (world -> camera in ``sensor2world_transform``, MTMC-order sizes
and the negated yaw in ``gt_boxes``).
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
from PIL import Image

from .config import CLASSES
from .media import encode_image
from .mtmc_format import DEPTH_KEY, MTMC_CLASSES, boxes_to_mtmc, camera_name
from .real import class_key
from .scene_data import SceneData

# The project's classes under their MTMC ground-truth and OVPKL (TAO) names.
MTMC_NAMES = {c: next(m for m in MTMC_CLASSES if class_key(m) == class_key(c)) for c in CLASSES}
OVPKL_NAMES = {"person": "person", "fourier_gr1_t2": "gr1_t2", "agility_digit": "agility_digit",
               "nova_carter": "nova_carter"}  # fmt: skip
MAP_SCALE = 20.0  # map.png pixels per metre


def scene_fps(scene: SceneData) -> float:
    """Frame rate of a scene with evenly spaced timestamps."""
    if scene.num_frames < 2:
        return 10.0
    return float(round(1.0 / float(np.median(np.diff(scene.timestamps))), 6))


def _png(array: np.ndarray) -> np.ndarray:
    return np.frombuffer(encode_image(array, "PNG"), dtype=np.uint8)


def _jpeg(array: np.ndarray, quality: int) -> np.ndarray:
    return np.frombuffer(encode_image(array, "JPEG", quality=quality, subsampling=0), dtype=np.uint8)


def write_video(
    path: Path, frames: np.ndarray, fps: float, pix_fmt: str = "yuv420p", crf: int = 17, preset: str = "medium"
) -> None:
    """H.264 video of ``frames [T, H, W, 3]`` uint8 (even sizes for 4:2:0), x264's keyframe interval (250).
    ``yuv444p`` with ``crf=0`` is near-lossless (the tests' setting); the MTMC videos themselves are ``yuv420p``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = pix_fmt
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _sensor(scene: SceneData, n: int, fps: float, map_origin: np.ndarray) -> dict:
    k, ext = scene.intrinsics[n, :3, :3], scene.extrinsics[n]
    camera_matrix = k @ ext[:3]
    position = -ext[:3, :3].T @ ext[:3, 3]
    forward = ext[2, :3]  # the camera's z axis in world coordinates
    w, h = (int(v) for v in scene.image_wh[n])
    attributes = {"fps": f"{fps:g}", "frameWidth": str(w), "frameHeight": str(h),
                  "direction": f"{math.degrees(math.atan2(forward[1], forward[0])) % 360:.3f}"}  # fmt: skip
    return {
        "type": "camera",
        "id": camera_name(n),
        "coordinates": {"x": float(position[0]), "y": float(position[1])},
        "scaleFactor": MAP_SCALE,
        "translationToGlobalCoordinates": {"x": float(map_origin[0]), "y": float(map_origin[1])},
        "attributes": [{"name": key, "value": value} for key, value in attributes.items()],
        "intrinsicMatrix": k.tolist(),
        "extrinsicMatrix": ext[:3].tolist(),
        "cameraMatrix": camera_matrix.tolist(),
        "homography": (camera_matrix[:, [0, 1, 3]] / camera_matrix[2, 3]).tolist(),  # floor plane z = 0 -> image
    }


def _ground_truth(scene: SceneData) -> dict[str, list[dict]]:
    cams = [camera_name(n) for n in range(len(scene.image_wh))]
    frames: dict[str, list[dict]] = {}
    for t in range(scene.num_frames):
        rows = scene.frame_slice(t)
        location, scale, yaw = boxes_to_mtmc(scene.boxes[rows])
        objects = []
        for m, (label, ident) in enumerate(zip(scene.labels[rows], scene.ids[rows], strict=True)):
            rects = scene.boxes_2d[rows][m] if scene.boxes_2d is not None else np.full((len(cams), 4), np.nan)
            objects.append(
                {
                    "object type": MTMC_NAMES[CLASSES[label]],
                    "object id": int(ident),
                    "3d location": location[m].tolist(),
                    "3d bounding box scale": scale[m].tolist(),
                    "3d bounding box rotation": [0.0, 0.0, float(yaw[m])],
                    "2d bounding box visible": {
                        cam: rect.tolist() for cam, rect in zip(cams, rects, strict=True) if np.isfinite(rect).all()
                    },
                }
            )
        frames[str(t)] = objects
    return frames


def _map(scene: SceneData) -> tuple[np.ndarray, np.ndarray]:
    """A top view of the room (floor white, distractor footprints grey) and its translationToGlobalCoordinates.

    Map pixel = ((x + tx) * scale, height - (y + ty) * scale), as the MTMC calibration defines it.
    """
    half = np.asarray(scene.room_size, float) / 2 + 1.0
    w, h = (math.ceil(2 * v * MAP_SCALE) for v in half)
    image = np.full((h, w, 3), 255, np.uint8)
    origin = half  # world (-half) lands on pixel 0
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x, y = u / MAP_SCALE - origin[0], (h - v) / MAP_SCALE - origin[1]
    for box in scene.distractor_boxes:
        c, s = math.cos(box[6]), math.sin(box[6])
        along, across = (x - box[0]) * c + (y - box[1]) * s, -(x - box[0]) * s + (y - box[1]) * c
        image[(np.abs(along) <= box[3] / 2) & (np.abs(across) <= box[4] / 2)] = 150
    return image, origin


def export_mtmc(
    scenes: Sequence[SceneData],
    root: str | Path,
    split: str = "train",
    pix_fmt: str = "yuv420p",
    crf: int = 17,
    preset: str = "medium",
) -> list[Path]:
    """Write each scene as ``root/split/<scene name>/`` in the MTMC layout (videos by x264 at ``crf``, ``preset``);
    returns the scene folders."""
    folders = []
    for scene in scenes:
        folder = Path(root) / split / scene.name
        fps = scene_fps(scene)
        map_image, map_origin = _map(scene)
        for n in range(len(scene.image_wh)):
            write_video(folder / "videos" / f"{camera_name(n)}.mp4", scene.images[:, n], fps, pix_fmt, crf, preset)
        if scene.depth is not None:
            (folder / "depth_maps").mkdir(parents=True, exist_ok=True)
            for n in range(len(scene.image_wh)):
                with h5py.File(folder / "depth_maps" / f"{camera_name(n)}.h5", "w") as f:
                    for t in range(scene.num_frames):
                        f.create_dataset(DEPTH_KEY.format(frame=t), data=_png(scene.depth[t, n]))
        sensors = [_sensor(scene, n, fps, map_origin) for n in range(len(scene.image_wh))]
        (folder / "calibration.json").write_text(json.dumps({"sensors": sensors}, indent=1))
        (folder / "ground_truth.json").write_text(json.dumps(_ground_truth(scene)))
        Image.fromarray(map_image).save(folder / "map.png")
        folders.append(folder)
    return folders


def export_ovpkl(scenes: Sequence[SceneData], root: str | Path, split: str = "train", quality: int = 95) -> list[Path]:
    """Write each scene as ``root/split/<scene>_infos_<split>.pkl`` plus ``root/<scene>/<camera>.h5`` (JPEG frames
    under ``rgb/``, PNG depth under ``distance_to_image_plane_png/``), as TAO's converter lays them out: image paths
    absolute, depth paths relative to ``root`` (TAO's data_root). Returns the pickle files."""
    root = Path(root).resolve()
    written = []
    for scene in scenes:
        cams = [camera_name(n) for n in range(len(scene.image_wh))]
        fps = scene_fps(scene)
        (root / scene.name).mkdir(parents=True, exist_ok=True)
        for n, cam in enumerate(cams):
            with h5py.File(root / scene.name / f"{cam}.h5", "w") as f:
                for t in range(scene.num_frames):
                    f.create_dataset(f"rgb/rgb_{t:05d}.jpg", data=_jpeg(scene.images[t, n], quality))
                    if scene.depth is not None:
                        key = f"distance_to_image_plane_png/distance_to_image_plane_{t:05d}.png"
                        f.create_dataset(key, data=_png(scene.depth[t, n]))
        infos = []
        for t in range(scene.num_frames):
            rows = scene.frame_slice(t)
            location, scale, yaw = boxes_to_mtmc(scene.boxes[rows])
            token = f"{scene.name}__{t:09d}"
            cam_infos = {}
            for n, cam in enumerate(cams):
                cam_infos[cam] = {
                    "data_path": (str(root / scene.name / f"{cam}.h5"), f"rgb/rgb_{t:05d}.jpg"),
                    "sample_data_token": f"{token}+{cam}",
                    "cam_intrinsic": scene.intrinsics[n, :3, :3].copy(),
                    "sensor2world_transform": scene.extrinsics[n].copy(),  # world -> camera, as TAO stores it
                }
                if scene.depth is not None:
                    key = f"distance_to_image_plane_png/distance_to_image_plane_{t:05d}.png"
                    cam_infos[cam]["depth_map_path"] = (f"{scene.name}/{cam}.h5", key)
            infos.append(
                {
                    "frame_idx": t,
                    "cams": cam_infos,
                    "scene_name": scene.name,
                    "timestamp": float(scene.timestamps[t]),
                    "token": token,
                    "instance_inds": scene.ids[rows].copy(),
                    "asset_inds": scene.ids[rows].copy(),
                    "gt_boxes": np.concatenate([location, scale, -yaw[:, None]], axis=1),
                    "gt_names": np.asarray([OVPKL_NAMES[CLASSES[label]] for label in scene.labels[rows]], dtype=str),
                    "gt_velocity": scene.boxes[rows, 7:10].copy(),
                    "valid_flag": np.ones(rows.stop - rows.start, bool),
                    "gt_visibility": [dict(zip(cams, map(float, vis), strict=True)) for vis in scene.visibility[rows]],
                }
            )
        path = root / split / f"{scene.name}_infos_{split}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            pickle.dump({"metadata": {"version": "synthetic", "split_type": split, "fps": fps}, "infos": infos}, fh)
        written.append(path)
    return written
