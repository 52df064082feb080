"""Reader for TAO's OVPKL files (the pickles TAO's data service converts MTMC scenes and Isaac Sim exports into).

A file is ``{"metadata": {...}, "infos": [frame dicts]}``; a frame has ``scene_name``, ``frame_idx``,
``timestamp``, ``cams`` ``{camera: {data_path, depth_map_path, cam_intrinsic 3x3, sensor2world_transform 4x4}}``
and the ground truth ``gt_boxes`` (N, 7), ``gt_names``, ``gt_velocity``, ``instance_inds``, ``valid_flag`` and
``gt_visibility`` (one ``{camera: fraction}`` per box). ``data_path`` is an image file or ``(HDF5 file, "rgb/
rgb_00000.jpg")``; ``depth_map_path`` likewise, relative to the data root.

Two conventions of TAO's converter are not what the names say; both are options, defaulting to what TAO writes:

* ``extrinsic``: ``sensor2world_transform`` holds the world -> camera matrix (TAO projects with
  ``K4 @ sensor2world_transform``): ``world_to_camera``; ``camera_to_world`` inverts it.
* ``heading``: ``gt_boxes`` are ``[x, y, z, w, l, h, -yaw]`` in MTMC terms (scale as in ground_truth.json, the
  heading the negated MTMC yaw): ``tao``; ``lidar`` reads ``[x, y, z, l, w, h, yaw]`` with ``l`` along the heading,
  the project's own layout.

The tests prove the defaults by projecting the boxes of an exported scene into its images. Pickles are loaded
through ``safe_pickle`` (plain data only). A frame whose image is missing for a chosen camera is skipped and counted;
rows with ``valid_flag`` False are dropped and counted. Moving cameras are refused: a scene's rig must be static.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .media import CameraFrames, FileRef, ImageFrames, MediaError, describe, image_size, missing_refs
from .mtmc_format import boxes_from_mtmc
from .real import DataError, LoadReport, Objects, RealDataConfig, Rig, assemble, make_rig, split_entries
from .safe_pickle import safe_load
from .scene_data import SceneData

log = logging.getLogger(__name__)

EXTRINSICS = ("world_to_camera", "camera_to_world")
HEADINGS = ("tao", "lidar")


@dataclass(frozen=True, kw_only=True)
class OvpklConfig(RealDataConfig):
    """OVPKL data: ``path`` is a folder of pickles, e.g. TAO's results folder with ``train/*.pkl`` and ``val/*.pkl``;
    ``splits`` name its sub-folders or files."""

    path: str | None = None
    data_root: str | None = None  # resolves relative data/depth paths; None: the pickle's folder and its parents
    extrinsic: str = "world_to_camera"
    heading: str = "tao"
    fps: float = 30.0  # only for frames without a timestamp

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.path is None:
            raise ConfigError("data.path: set it to an OVPKL file or a folder of them (TAO's results_dir)")
        if Path(self.path).is_file():
            raise ConfigError(
                f"data.path: {self.path} is a file; point data.path at its folder and name the file per split, "
                f"e.g. data.splits={{train:[{Path(self.path).name}],val:[...]}}"
            )
        if not Path(self.path).is_dir():
            raise ConfigError(f"data.path: {self.path} does not exist")
        if self.extrinsic not in EXTRINSICS:
            raise ConfigError(f"data.extrinsic: {self.extrinsic!r} is not one of {EXTRINSICS}")
        if self.heading not in HEADINGS:
            raise ConfigError(f"data.heading: {self.heading!r} is not one of {HEADINGS}")
        if self.fps <= 0:
            raise ConfigError(f"data.fps: must be positive, got {self.fps}")


def load_infos(path: Path) -> list[dict[str, Any]]:
    """The frame dicts of one OVPKL file, checked for the keys every frame needs."""
    data = safe_load(path)
    if not isinstance(data, Mapping) or not isinstance(data.get("infos"), list):
        raise DataError(f"{path}: not an OVPKL file; expected a dict with an 'infos' list")
    for i, info in enumerate(data["infos"]):
        missing = [k for k in ("cams", "scene_name", "frame_idx") if k not in info]
        if missing:
            raise DataError(f"{path}: infos[{i}] has no {missing}")
    return data["infos"]


def _extrinsic(matrix: Any, cfg: OvpklConfig, where: str) -> np.ndarray:
    m = np.asarray(matrix, float).reshape(4, 4)
    if cfg.extrinsic == "camera_to_world":
        m = np.linalg.inv(m)
    rot = m[:3, :3]
    if not (np.allclose(rot @ rot.T, np.eye(3), atol=1e-4) and np.linalg.det(rot) > 0):
        raise DataError(f"{where}: sensor2world_transform is not a rigid transform (rotation + translation)")
    return m


class _Paths:
    """Resolves the relative paths of a pickle: data.data_root if set, else the pickle's folder and its parents."""

    def __init__(self, pkl: Path, data_root: str | None):
        self.bases = [Path(data_root)] if data_root else [pkl.parent, pkl.parent.parent, pkl.parent.parent.parent]

    def ref(self, value: Any) -> FileRef:
        if isinstance(value, (tuple, list)):
            return (self._file(str(value[0])), str(value[1]))
        return self._file(str(value))

    def _file(self, name: str) -> str:
        path = Path(name)
        if path.is_absolute():
            return str(path)
        for base in self.bases:
            if (base / path).exists():
                return str(base / path)
        return str(self.bases[0] / path)  # missing: ref_exists reports it


def _frame_objects(info: Mapping[str, Any], cameras: Sequence[str], cfg: OvpklConfig, report: LoadReport, where: str):
    """Boxes [M, 10], raw names, ids and visibility [M, N] of one frame in the project's convention."""
    if "gt_boxes" not in info:
        report.frames_without_gt += 1
        return np.zeros((0, 10)), np.zeros(0, str), np.zeros(0, np.int64), np.zeros((0, len(cameras)))
    raw = np.asarray(info["gt_boxes"], float).reshape(-1, 7)
    m = len(raw)
    names = np.asarray(info.get("gt_names", []), dtype=str).reshape(-1)
    ids = np.asarray(info.get("instance_inds", np.arange(m)), np.int64).reshape(-1)
    if len(names) != m or len(ids) != m:
        raise DataError(f"{where}: gt_boxes has {m} rows but gt_names {len(names)} and instance_inds {len(ids)}")
    boxes = np.zeros((m, 10))
    if cfg.heading == "tao":
        boxes[:, :7] = boxes_from_mtmc(raw[:, :3], raw[:, 3:6], -raw[:, 6])
    else:
        boxes[:, :7] = raw
    velocity = np.asarray(info.get("gt_velocity", np.zeros((m, 3))), float).reshape(m, -1)
    boxes[:, 7 : 7 + min(3, velocity.shape[1])] = np.nan_to_num(velocity[:, :3])
    visibility = np.zeros((m, len(cameras)))
    for k, per_camera in enumerate(info.get("gt_visibility") or []):
        if isinstance(per_camera, Mapping):
            visibility[k] = [float(per_camera.get(cam, 0.0)) for cam in cameras]
    valid = np.asarray(info.get("valid_flag", np.ones(m, bool)), bool).reshape(-1)
    report.invalid_boxes += int((~valid).sum())
    return boxes[valid], names[valid], ids[valid], visibility[valid]


def _frames_with_images(
    infos: list[dict[str, Any]], cameras: list[str], paths: _Paths, cfg: OvpklConfig, report: LoadReport
) -> tuple[list[dict[str, Any]], list[list[FileRef]]]:
    """The chosen frames that have an image for every camera (the others counted), and those images."""
    by_frame = {int(info["frame_idx"]): info for info in infos}
    chosen = [by_frame[int(f)] for f in cfg.select_frames(by_frame)]
    wanted = [[paths.ref(info["cams"][c]["data_path"]) if "data_path" in info["cams"].get(c, {}) else None
               for c in cameras] for info in chosen]  # fmt: skip
    missing = missing_refs([r for refs in wanted for r in refs if r is not None])
    kept = [(info, refs) for info, refs in zip(chosen, wanted, strict=True) if not {None, *missing} & {*refs}]
    report.frames_dropped += len(chosen) - len(kept)
    return [info for info, _ in kept], [refs for _, refs in kept]


def _rig(
    frames: list[dict[str, Any]], first_images: list[FileRef], cameras: list[str], cfg: OvpklConfig, where: str
) -> Rig:
    """The cameras' calibration, which must not change from frame to frame, at the network image size."""
    calib = [frames[0]["cams"][c] for c in cameras]
    for info in frames[1:]:
        for c, ref in zip(cameras, calib, strict=True):
            cam = info["cams"][c]
            for key in ("cam_intrinsic", "sensor2world_transform"):
                if np.abs(np.asarray(cam[key], float) - np.asarray(ref[key], float)).max() > 1e-6:
                    raise DataError(
                        f"{where}: camera {c} moves at frame {info['frame_idx']}; only static rigs are read"
                    )
    extrinsics = np.stack([_extrinsic(cam["sensor2world_transform"], cfg, f"{where} camera {c}")
                           for c, cam in zip(cameras, calib, strict=True)])  # fmt: skip
    try:
        source_wh = np.asarray([image_size(ref) for ref in first_images], float)
    except MediaError as err:
        raise DataError(str(err)) from err
    k3 = np.stack([np.asarray(cam["cam_intrinsic"], float).reshape(3, 3) for cam in calib])
    return make_rig(cameras, k3, extrinsics, source_wh, cfg)


def _scene(name: str, infos: list[dict[str, Any]], paths: _Paths, cfg: OvpklConfig, source: str) -> SceneData:
    report = LoadReport(name)
    where = f"{source} scene {name}"
    infos = sorted(infos, key=lambda info: int(info["frame_idx"]))
    cameras = list(cfg.cameras) if cfg.cameras is not None else list(infos[0]["cams"])
    absent = [c for c in cameras if c not in infos[0]["cams"]]
    if absent:
        raise DataError(f"{where}: no camera {absent} (it has {list(infos[0]['cams'])}); fix data.cameras")
    frames, images = _frames_with_images(infos, cameras, paths, cfg, report)
    if not frames:
        example = describe(paths.ref(infos[0]["cams"][cameras[0]].get("data_path", "?")))
        raise DataError(
            f"{where}: no frame has an image for every camera {cameras} (e.g. {example} is missing); if the paths "
            "are relative to another folder, set data.data_root"
        )
    rig = _rig(frames, images[0], cameras, cfg, where)
    rows = [_frame_objects(info, cameras, cfg, report, f"{where} frame {info['frame_idx']}") for info in frames]
    counts = [len(r[0]) for r in rows]
    objects = Objects(
        frame=np.repeat(np.arange(len(frames)), counts),
        boxes=np.concatenate([r[0] for r in rows]).reshape(-1, 10),
        labels=cfg.label_of(np.concatenate([r[1] for r in rows]), where, report),
        ids=np.concatenate([r[2] for r in rows]).astype(np.int64),
        visibility=np.concatenate([r[3] for r in rows]).reshape(-1, len(cameras)),
        boxes_2d=np.full((sum(counts), len(cameras), 4), np.nan),  # OVPKL keeps no 2D boxes
    )
    w, h = (int(v) for v in rig.image_wh[0])
    index = np.arange(len(frames))
    readers = [ImageFrames(refs, (w, h)) for refs in zip(*images, strict=True)]
    depth = None
    if cfg.with_depth:
        if any("depth_map_path" not in info["cams"][c] for info in frames for c in cameras):
            raise DataError(f"{where}: frames without depth_map_path; set data.with_depth=false")
        depth_readers = [ImageFrames([paths.ref(info["cams"][c]["depth_map_path"]) for info in frames], (w, h), True)
                         for c in cameras]  # fmt: skip
        depth = CameraFrames(depth_readers, index, (h, w), np.uint16)
    frame_ids = np.asarray([int(info["frame_idx"]) for info in frames])
    timestamps = np.asarray(
        [float(info.get("timestamp", f / cfg.fps)) for info, f in zip(frames, frame_ids, strict=True)]
    )
    images_lazy = CameraFrames(readers, index, (h, w, 3), np.uint8)
    return assemble(name, frame_ids, timestamps, rig, objects, images_lazy, depth, cfg, report)


class OvpklSource:
    """The splits of OVPKL files as SceneData lists (see ``SceneDataModule``); scenes split by ``scene_name``."""

    def __init__(self, config: OvpklConfig):
        self.config = config
        self.path = Path(config.path)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def files(self, split: str) -> list[Path]:
        return split_entries(self.path, split, self.config, Path.is_file, "*.pkl")

    def prepare(self) -> None:
        """OVPKL needs no preparation: the pickles are read when a split is set up."""

    def scenes(self, split: str) -> list[SceneData]:
        out = []
        for pkl in self.files(split):
            groups: dict[str, list[dict[str, Any]]] = {}
            for info in load_infos(pkl):
                groups.setdefault(str(info["scene_name"]), []).append(info)
            paths = _Paths(pkl, self.config.data_root)
            out += [_scene(name, infos, paths, self.config, str(pkl)) for name, infos in groups.items()]
        return out
