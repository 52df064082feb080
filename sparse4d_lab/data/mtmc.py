"""Reader for MTMC_Tracking_2025 scenes (NVIDIA PhysicalAI-SmartSpaces, the AI City 2025 track-1 data).

A scene folder holds ``videos/<camera>.mp4``, ``calibration.json``, ``ground_truth.json`` (train/val), optional
``depth_maps/<camera>.h5`` and ``map.png``. The formats, as read here:

* calibration: ``{"sensors": [{"type": "camera", "id", "intrinsicMatrix" 3x3, "extrinsicMatrix" 3x4 world ->
  camera (OpenCV axes), "attributes": [{"name": "fps" | "frameWidth" | "frameHeight" | ..., "value": str}]}]}``;
  the projection is ``K4 @ [E; 0 0 0 1]``. AI City 2026's real scenes give only ``cameraMatrix`` (3x4), split into
  both (``calibration.py``).
* ground truth: ``ground_truth.json``, read by ``mtmc_format``.
* depth: ``depth_maps/<camera>.h5`` with PNG-encoded uint16 datasets ``distance_to_image_plane_{frame:05d}.png``
  (millimetres to the image plane, the project's depth unit).

The file carries no velocity; the reader derives it from the next source frame's position, (next - now) x fps,
or from the previous one at a track's last frame. A frame missing from ``ground_truth.json`` is a frame without
objects (counted). Videos are probed when a scene loads (a corrupt file is refused there, naming it); a camera in
the calibration without a video, or a video without calibration, is skipped and counted unless it was asked for by
name. The parsed ground truth is cached as ``.npz`` (keyed by path, size and modification time), because a
ground-truth file can take a minute to parse.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, require
from .calibration import CameraCalibration, read_calibration
from .frame_cache import FORMATS, FrameEntry, build, cached_readers
from .media import CameraFrames, ImageFrames, MediaError, VideoFrames, probe_video
from .mtmc_format import DEPTH_KEY, GroundTruth, boxes_from_mtmc, read_ground_truth
from .real import (
    DataError,
    LoadReport,
    Objects,
    RealDataConfig,
    Rig,
    assemble,
    make_rig,
    split_entries,
)
from .scene_data import SceneData

log = logging.getLogger(__name__)


def _velocity(gt: GroundTruth, fps: float) -> np.ndarray:
    """[K, 3] (next - now) x fps per (class, id) track over source frames; (now - previous) at a track's end."""
    velocity = np.zeros((len(gt.frame), 3))
    if not len(gt.frame):
        return velocity
    _, track = np.unique(np.char.add(np.char.add(gt.type, "#"), gt.id.astype(str)), return_inverse=True)
    key = track.reshape(-1).astype(np.int64) * (int(gt.frame.max()) + 2) + gt.frame
    order = np.argsort(key)
    sorted_key = key[order]

    def row_at(offset: int) -> np.ndarray:
        """Row of the same track ``offset`` frames away, -1 if there is none."""
        pos = np.minimum(np.searchsorted(sorted_key, key + offset), len(key) - 1)
        return np.where(sorted_key[pos] == key + offset, order[pos], -1)

    nxt, prv = row_at(1), row_at(-1)
    has_next, has_prev = nxt >= 0, (nxt < 0) & (prv >= 0)
    velocity[has_next] = (gt.location[nxt[has_next]] - gt.location[has_next]) * fps
    velocity[has_prev] = (gt.location[has_prev] - gt.location[prv[has_prev]]) * fps
    return velocity


# ----------------------------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class MtmcConfig(RealDataConfig):
    """MTMC_Tracking_2025 data: ``root`` holds split folders (train/, val/, test/) of scene folders."""

    root: str | None = None
    require_gt: bool = True  # False: scenes without ground_truth.json load with no objects (inference)
    cache_dir: str | None = None  # parsed ground truth and frame cache; None: $SPARSE4D_LAB_CACHE or ~/.cache/...
    frame_cache: str | None = "raw"  # decoded frames stored once (frame_cache.FORMATS); None: decode every read
    frame_cache_quality: int = 95  # JPEG quality of frame_cache=jpeg

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.frame_cache is None or self.frame_cache in FORMATS,
            "data.frame_cache",
            f"unknown format {self.frame_cache!r}; valid: {', '.join(FORMATS)}, or null to decode the videos directly",
        )
        require(1 <= self.frame_cache_quality <= 100, "data.frame_cache_quality", "must lie in [1, 100]")
        if self.root is None:
            raise ConfigError("data.root: set it to the MTMC_Tracking_2025 folder (the one holding train/ and val/)")
        if not Path(self.root).is_dir():
            raise ConfigError(f"data.root: {self.root} is not a folder; point it at MTMC_Tracking_2025")


def _choose_cameras(scene: Path, calibration: dict[str, CameraCalibration], cfg: MtmcConfig, report: LoadReport):
    videos = {p.stem for p in (scene / "videos").glob("*.mp4")}
    if cfg.cameras is not None:
        for cam in cfg.cameras:
            if cam not in calibration:
                raise DataError(
                    f"{scene}: data.cameras asks for {cam!r}, which calibration.json does not list "
                    f"(it lists {list(calibration)})"
                )
            if cam not in videos:
                raise DataError(f"{scene}: data.cameras asks for {cam!r}, but videos/{cam}.mp4 does not exist")
        return list(cfg.cameras)
    chosen = []
    for cam in calibration:
        if cam in videos:
            chosen.append(cam)
        else:
            report.skipped_cameras[cam] = "in calibration.json but videos/ has no video"
    for cam in sorted(videos - set(calibration)):
        report.skipped_cameras[cam] = "video without calibration"
    if not chosen:
        raise DataError(f"{scene}: no camera has both a calibration and a video in videos/")
    return chosen


def load_scene(scene: Path, cfg: MtmcConfig) -> tuple[SceneData, LoadReport]:
    """One scene folder as a lazily decoding SceneData, and what was skipped on the way."""
    report = LoadReport(scene.name)
    calibration = read_calibration(scene / "calibration.json")
    names = _choose_cameras(scene, calibration, cfg, report)
    infos = []
    for cam in names:
        try:
            infos.append(probe_video(scene / "videos" / f"{cam}.mp4"))
        except MediaError as err:
            raise DataError(f"{err}; or leave camera {cam} out with data.cameras") from err
    fps = next((calibration[c].fps for c in names if calibration[c].fps), None) or infos[0].fps
    source_wh = np.asarray([calibration[c].frame_wh or (i.width, i.height) for c, i in zip(names, infos, strict=True)])
    lengths = [i.num_frames for i in infos]
    num_source = min(lengths)
    report.frames_dropped += max(lengths) - num_source

    gt_path = scene / "ground_truth.json"
    if gt_path.exists():
        gt = read_ground_truth(gt_path, cfg.cache_dir)
    elif cfg.require_gt:
        raise DataError(f"{gt_path} is missing; it is needed to train or evaluate (data.require_gt=false to infer)")
    else:
        gt = GroundTruth.empty()
    frame_ids = cfg.select_frames(range(num_source))
    if len(frame_ids) == 0:
        raise DataError(
            f"{scene}: no frame left: {num_source} frames, data.start_frame={cfg.start_frame}, "
            f"data.frame_stride={cfg.frame_stride}"
        )
    report.frames_without_gt += len(np.setdiff1d(frame_ids, gt.frames))

    rig = make_rig(
        names,
        np.stack([calibration[c].intrinsic for c in names]),
        np.stack([calibration[c].extrinsic for c in names]),
        source_wh,
        cfg,
    )
    objects = _objects(gt, frame_ids, rig, fps, cfg, report, gt_path)
    out_wh = tuple(int(v) for v in rig.image_wh[0])
    readers = [VideoFrames(scene / "videos" / f"{c}.mp4", i.fps, out_wh) for c, i in zip(names, infos, strict=True)]
    if cfg.frame_cache:  # every read comes from the cache (built here if missing), never a mix with the videos
        readers = cached_readers([frame_entry(r, frame_ids, cfg) for r in readers], cfg.cache_dir)
    images = CameraFrames(readers, frame_ids, (out_wh[1], out_wh[0], 3), np.uint8)
    depth = None
    if cfg.with_depth:
        depth_readers = []
        for cam in names:
            h5 = scene / "depth_maps" / f"{cam}.h5"
            if not h5.exists():
                raise DataError(f"{h5} is missing; set data.with_depth=false or add the scene's depth maps")
            refs = [(str(h5), DEPTH_KEY.format(frame=f)) for f in range(num_source)]
            depth_readers.append(ImageFrames(refs, out_wh, depth=True))
        depth = CameraFrames(depth_readers, frame_ids, (out_wh[1], out_wh[0]), np.uint16)
    data = assemble(scene.name, frame_ids, frame_ids / fps, rig, objects, images, depth, cfg, report)
    return data, report


def frame_entry(video: VideoFrames, frame_ids: np.ndarray, cfg: MtmcConfig) -> FrameEntry:
    """The frame-cache entry holding what a job reads of one video."""
    frames = tuple(int(f) for f in frame_ids)
    return FrameEntry(Path(video.path), video.fps, frames, video.out_wh, cfg.frame_cache, cfg.frame_cache_quality)


def _objects(
    gt: GroundTruth, frame_ids: np.ndarray, rig: Rig, fps: float, cfg: MtmcConfig, report: LoadReport, source: Path
) -> Objects:
    velocity = _velocity(gt, fps)
    position = np.full(int(max(gt.frame.max(initial=0), frame_ids.max())) + 1, -1, np.int64)
    position[frame_ids] = np.arange(len(frame_ids))
    rows = np.flatnonzero(position[gt.frame] >= 0)
    labels = cfg.label_of(gt.type[rows], str(source), report)
    report.tilted_boxes += int(np.sum(np.abs(gt.rotation[rows, :2]).max(axis=1, initial=0) > 1e-3))
    boxes = np.zeros((len(rows), 10))
    boxes[:, :7] = boxes_from_mtmc(gt.location[rows], gt.scale[rows], gt.rotation[rows, 2])
    boxes[:, 7:] = velocity[rows]
    # Visible 2D boxes of the chosen cameras, scaled to the network image; visibility 1 where a camera has one.
    n_cam = len(rig.names)
    boxes_2d = np.full((len(rows), n_cam, 4), np.nan)
    slot = np.full(len(gt.frame), -1, np.int64)
    slot[rows] = np.arange(len(rows))
    cam_slot = np.asarray([rig.names.index(c) if c in rig.names else -1 for c in gt.cameras], np.int64)
    keep = (slot[gt.box_row] >= 0) & (cam_slot[gt.box_camera] >= 0)
    r, c = slot[gt.box_row[keep]], cam_slot[gt.box_camera[keep]]
    boxes_2d[r, c] = gt.box[keep] * np.tile(rig.scale[c], 2)
    return Objects(
        frame=position[gt.frame[rows]],
        boxes=boxes,
        labels=labels,
        ids=gt.id[rows],
        visibility=np.isfinite(boxes_2d[..., 0]).astype(float),
        boxes_2d=boxes_2d,
    )


def is_scene(path: Path) -> bool:
    return any((path / name).exists() for name in ("calibration.json", "ground_truth.json", "videos"))


class MtmcSource:
    """The splits of an MTMC_Tracking_2025 folder as SceneData lists (see ``SceneDataModule``)."""

    def __init__(self, config: MtmcConfig):
        self.config = config
        self.root = Path(config.root)
        self.reports: dict[str, LoadReport] = {}

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def scene_dirs(self, split: str) -> list[Path]:
        """Every folder that looks like a scene (a calibration, ground truth or videos/): one that lacks a file it
        needs fails when it loads, naming the file, rather than being passed over."""
        return split_entries(self.root, split, self.config, is_scene, "*")

    def frame_entries(self, splits: Sequence[str] | None = None) -> list[FrameEntry]:
        """The frame-cache entries of the splits' videos (each once: splits may share scenes)."""
        direct = dataclasses.replace(self.config, frame_cache=None)
        entries: dict[str, FrameEntry] = {}
        for split in splits or self.config.splits:
            for scene in self.scene_dirs(split):
                data, _ = load_scene(scene, direct)
                for reader in data.images.readers:
                    entry = frame_entry(reader, data.frame_ids, self.config)
                    entries.setdefault(entry.key, entry)
        return list(entries.values())

    def prepare(self) -> None:
        """Parse (and cache) every scene's ground truth once, and decode the videos into the frame cache."""
        for split in self.config.splits:
            for scene in self.scene_dirs(split):
                if (scene / "ground_truth.json").exists():
                    read_ground_truth(scene / "ground_truth.json", self.config.cache_dir)
        if self.config.frame_cache:
            entries = self.frame_entries()
            log.info("frame cache: %d videos (%s)", len(entries), self.config.frame_cache)
            build(entries, self.config.cache_dir)

    def load(self, scene: Path) -> SceneData:
        data, self.reports[scene.name] = load_scene(scene, self.config)
        return data

    def scenes(self, split: str) -> list[SceneData]:
        return [self.load(scene) for scene in self.scene_dirs(split)]
