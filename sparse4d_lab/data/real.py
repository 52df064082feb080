"""What the real-data readers (MTMC scenes, OVPKL files) share: their config, class mapping, load report and the
assembly of a ``SceneData`` from per-object rows.

Real recordings come with their own class names, camera sets and frame rates. The readers map them onto the
project's batch contract: classes through ``class_map`` (a class mapped to null is dropped and counted, a class not
in the map is refused by name), cameras by id, frames by a stride, images resized to ``image_size`` with the
intrinsics scaled to match. Everything skipped is counted in the ``LoadReport`` and logged.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import geometry
from ..errors import ConfigError, require
from .config import CLASSES, SPLITS
from .scene_data import SceneData

log = logging.getLogger(__name__)

# Raw class names of the MTMC ground truth, the OVPKL files and the model card, onto the project's classes.
# Keys match case-insensitively, ignoring spaces and underscores ("FourierGR1T2" == "fourier_gr1_t2").
DEFAULT_CLASS_MAP: dict[str, str | None] = {
    "Person": "person",
    "FourierGR1T2": "fourier_gr1_t2",
    "gr1_t2": "fourier_gr1_t2",
    "AgilityDigit": "agility_digit",
    "NovaCarter": "nova_carter",
    "Forklift": None,
    "Transporter": None,
    "PalletTruck": None,  # AI City 2026
}


class DataError(ValueError):
    """A real-data file that cannot be used as it is; the message names the file, the field and the fix."""


def class_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Radians to [-pi, pi), for numpy arrays (``geometry.wrap_angle``)."""
    return geometry.wrap_angle(torch.as_tensor(np.asarray(angle, float))).numpy()


@dataclass(frozen=True, kw_only=True)
class RealDataConfig:
    """Selection and preprocessing shared by the real-data sources (see the data configs for each field)."""

    splits: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: {"train": ("train",), "val": ("val",), "test": ("val",)}
    )
    cameras: tuple[str, ...] | None = None  # camera ids to use; None: every camera with data
    frame_stride: int = 1  # keep every k-th source frame
    start_frame: int = 0
    max_frames: int | None = None  # per scene, after the stride
    image_size: tuple[int, int] | None = (704, 384)  # (W, H) the network sees; None: the recorded size
    stride: int = 32  # total stride of the network that will see the images
    with_depth: bool = False
    classes: tuple[str, ...] = CLASSES
    class_map: dict[str, str | None] = field(default_factory=lambda: dict(DEFAULT_CLASS_MAP))
    min_visible_cameras: int = 0  # drop boxes visible in fewer of the chosen cameras

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        splits = {}
        for name, entries in dict(self.splits).items():
            require(name in SPLITS, "data.splits", f"unknown split {name!r}; valid: {list(SPLITS)}")
            splits[name] = (entries,) if isinstance(entries, str) else tuple(entries or ())
        object.__setattr__(self, "splits", splits)
        object.__setattr__(self, "class_map", dict(self.class_map))
        require(self.frame_stride >= 1, "data.frame_stride", f"must be >= 1, got {self.frame_stride}")
        require(self.start_frame >= 0, "data.start_frame", f"must be >= 0, got {self.start_frame}")
        require(self.max_frames is None or self.max_frames >= 1, "data.max_frames", "must be null or >= 1")
        require(self.cameras is None or len(self.cameras) > 0, "data.cameras", "list at least one camera id, or null")
        if self.image_size is not None:
            w, h = self.image_size
            require(
                w >= self.stride and h >= self.stride,
                "data.image_size",
                f"{(w, h)} is smaller than the network stride {self.stride}; use at least {(self.stride, self.stride)}",
            )
        require(len(self.classes) > 0 and len(set(self.classes)) == len(self.classes), "data.classes", "must be unique")
        bad = {k: v for k, v in self.class_map.items() if v is not None and v not in self.classes}
        require(not bad, "data.class_map", f"{bad} map to classes not in data.classes {list(self.classes)}")
        require(self.min_visible_cameras >= 0, "data.min_visible_cameras", "must be >= 0")

    def select_frames(self, available: Sequence[int]) -> np.ndarray:
        """The source frames to use among ``available`` (sorted): from start_frame, every frame_stride-th."""
        frames = np.asarray(sorted(available), dtype=np.int64)
        frames = frames[(frames >= self.start_frame) & ((frames - self.start_frame) % self.frame_stride == 0)]
        return frames[: self.max_frames] if self.max_frames is not None else frames

    def label_of(self, names: Sequence[str], source: str, report: LoadReport) -> np.ndarray:
        """Class index per raw name, -1 for classes mapped to null (counted); unknown names are refused."""
        lookup = {class_key(k): v for k, v in self.class_map.items()}
        names = np.asarray(names, dtype=str)
        labels = np.full(len(names), -1, np.int64)
        for name in sorted({str(n) for n in names}):
            key = class_key(name)
            if key not in lookup:
                raise DataError(
                    f"{source}: object class {name!r} is not in data.class_map; map it to one of "
                    f"{list(self.classes)} (or to null to drop it), e.g. data.class_map.{name}=null"
                )
            target = lookup[key]
            mask = names == name
            if target is None:
                report.dropped_classes[name] += int(mask.sum())
            else:
                labels[mask] = self.classes.index(target)
        return labels


def config_from_mapping(cls: type, values: Mapping[str, Any]) -> Any:
    """Build a config dataclass from a plain mapping (a Hydra node), naming unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"data: unknown key(s) {sorted(unknown)} for {cls.__name__}; valid: {sorted(known)}")
    return cls(**values)


@dataclass
class LoadReport:
    """What a reader skipped or derived, per scene: printed in the log, kept for tests and curious users."""

    scene: str
    dropped_classes: Counter = field(default_factory=Counter)  # raw class -> boxes dropped (mapped to null)
    frames_without_gt: int = 0  # used frames with no ground-truth entry (read as frames without objects)
    frames_dropped: int = 0  # source frames past the shortest camera, or missing a camera's image
    skipped_cameras: dict[str, str] = field(default_factory=dict)  # camera -> why
    invalid_boxes: int = 0  # OVPKL rows with valid_flag False
    hidden_boxes: int = 0  # boxes visible in fewer than min_visible_cameras of the chosen cameras
    tilted_boxes: int = 0  # boxes with pitch or roll (read as yaw-only boxes)

    def log(self) -> None:
        notes = []
        if self.dropped_classes:
            notes.append(f"dropped boxes by class {dict(self.dropped_classes)}")
        for name in ("frames_without_gt", "frames_dropped", "invalid_boxes", "hidden_boxes", "tilted_boxes"):
            if getattr(self, name):
                notes.append(f"{name.replace('_', ' ')}: {getattr(self, name)}")
        notes += [f"camera {cam} skipped ({why})" for cam, why in self.skipped_cameras.items()]
        if notes:
            log.warning("scene %s: %s", self.scene, "; ".join(notes))


@dataclass(frozen=True)
class Rig:
    """The chosen cameras of a scene at the network's image size."""

    names: tuple[str, ...]
    intrinsics: np.ndarray  # [N, 4, 4], scaled to the network image size
    extrinsics: np.ndarray  # [N, 4, 4] world -> camera (OpenCV axes)
    source_wh: np.ndarray  # [N, 2] recorded image size
    image_wh: np.ndarray  # [N, 2] network image size

    @property
    def scale(self) -> np.ndarray:
        """[N, 2] pixel scale from the recorded to the network image."""
        return self.image_wh / self.source_wh


def make_rig(
    names: Sequence[str], k3: np.ndarray, extrinsics: np.ndarray, source_wh: np.ndarray, cfg: RealDataConfig
) -> Rig:
    """Intrinsics scaled from the recorded image to ``cfg.image_size`` (a resize is a scaled pinhole camera)."""
    source_wh = np.asarray(source_wh, float).reshape(len(names), 2)
    if cfg.image_size is None:
        if len({tuple(wh) for wh in source_wh}) > 1:
            raise ConfigError(
                f"data.image_size: the cameras record different sizes {source_wh.tolist()}; a batch needs one size, "
                "so set data.image_size=[W,H]"
            )
        image_wh = source_wh.copy()
    else:
        image_wh = np.tile(np.asarray(cfg.image_size, float), (len(names), 1))
    intrinsics = np.tile(np.eye(4), (len(names), 1, 1))
    intrinsics[:, :3, :3] = k3
    intrinsics[:, :2] *= (image_wh / source_wh)[:, :, None]
    return Rig(tuple(names), intrinsics, np.asarray(extrinsics, float), source_wh, image_wh)


@dataclass
class Objects:
    """Ground-truth rows of the chosen frames: ``frame`` indexes the scene's frames."""

    frame: np.ndarray  # [S]
    boxes: np.ndarray  # [S, 10]
    labels: np.ndarray  # [S]
    ids: np.ndarray  # [S]
    visibility: np.ndarray  # [S, N]
    boxes_2d: np.ndarray  # [S, N, 4] at the network image size, NaN where unseen

    def select(self, mask: np.ndarray) -> Objects:
        return Objects(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))


def assemble(
    name: str,
    frame_ids: np.ndarray,
    timestamps: np.ndarray,
    rig: Rig,
    objects: Objects,
    images: Any,
    depth: Any,
    cfg: RealDataConfig,
    report: LoadReport,
) -> SceneData:
    """A SceneData from chosen frames and rows (rows of dropped classes and hidden boxes removed, counted)."""
    keep = objects.labels >= 0
    hidden = keep & ((objects.visibility > 0).sum(axis=1) < cfg.min_visible_cameras)
    report.hidden_boxes += int(hidden.sum())
    objects = objects.select(keep & ~hidden)
    order = np.argsort(objects.frame, kind="stable")
    objects = objects.select(order)
    counts = np.bincount(objects.frame, minlength=len(frame_ids))
    report.log()
    return SceneData(
        name=name,
        images=images,
        projection=rig.intrinsics @ rig.extrinsics,
        intrinsics=rig.intrinsics,
        extrinsics=rig.extrinsics,
        image_wh=rig.image_wh,
        timestamps=np.asarray(timestamps, float),
        frame_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        boxes=objects.boxes.reshape(-1, 10),
        labels=objects.labels.astype(np.int64),
        ids=objects.ids.astype(np.int64),
        visibility=objects.visibility.reshape(-1, len(rig.names)),
        distractor_boxes=np.zeros((0, 10)),
        distractor_kinds=np.zeros(0, np.int64),
        room_size=np.zeros(2),
        depth=depth,
        boxes_2d=objects.boxes_2d.reshape(-1, len(rig.names), 4),
        frame_ids=np.asarray(frame_ids, np.int64),
        cameras=np.asarray(rig.names, dtype=str),
    )


def split_entries(root: Path, split: str, cfg: RealDataConfig, is_item: Any, pattern: str) -> list[Path]:
    """The items (scene folders, pickle files) of one split: each ``data.splits`` entry, relative to ``root``,
    is an item itself or a folder whose items (matching ``pattern``) are all taken, in name order."""
    items: list[Path] = []
    for entry in cfg.splits.get(split, ()):
        path = Path(entry) if Path(entry).is_absolute() else root / entry
        if is_item(path):
            items.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.glob(pattern) if is_item(p))
            if not found:
                raise DataError(f"data.splits.{split}: {path} holds nothing to read (looked for {pattern})")
            items += found
        else:
            raise DataError(f"data.splits.{split}: {path} does not exist; entries are paths relative to {root}")
    return items
