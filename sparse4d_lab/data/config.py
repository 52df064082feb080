"""Configuration of the synthetic warehouse, validated before any work is done."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import require

# The four moving classes of the TAO Sparse4D model card, in label order.
CLASSES: tuple[str, ...] = ("person", "fourier_gr1_t2", "agility_digit", "nova_carter")
SPLITS: tuple[str, ...] = ("train", "val", "test")
FORMAT_VERSION = 2  # bump when the generator's output changes for the same config
CACHE_ENV = "SPARSE4D_LAB_CACHE"


def default_cache_dir() -> Path:
    """Where built data sets are cached: ``$SPARSE4D_LAB_CACHE``, else ``~/.cache/sparse4d_lab``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "sparse4d_lab"))


@dataclass(frozen=True)
class WarehouseConfig:
    """Everything that determines the generated data. Same config -> byte-identical data."""

    seed: int = 0
    scenes: dict[str, int] = field(default_factory=lambda: {"train": 48, "val": 3, "test": 3})
    frames_per_scene: int = 40
    fps: float = 10.0
    room_size: tuple[float, float] = (16.0, 12.0)
    wall_height: float = 6.0
    num_cameras: int = 4
    camera_height: tuple[float, float] = (3.0, 5.0)
    horizontal_fov_deg: tuple[float, float] = (80.0, 100.0)
    image_size: tuple[int, int] = (176, 96)  # (W, H) the network sees
    objects_per_scene: tuple[int, int] = (4, 9)
    class_weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2)
    racks: tuple[int, int] = (2, 4)
    pallets: tuple[int, int] = (1, 3)
    crates: tuple[int, int] = (2, 4)
    bins: tuple[int, int] = (1, 3)
    enter_fraction: float = 0.3  # share of objects that walk in through a door after the first frame
    exit_probability: float = 0.15  # chance that a reached waypoint is followed by leaving through a door
    noise_std: float = 0.02  # image noise, in [0, 1] intensity
    with_depth: bool = False
    stride: int = 32  # total stride of the network that will see the images

    def __post_init__(self) -> None:
        # Hydra/OmegaConf hand over lists; normalise to tuples so the config stays hashable and comparable.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        object.__setattr__(self, "scenes", {k: int(v) for k, v in dict(self.scenes).items()})
        validate(self)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Hash of everything that changes the data: the cache key."""
        payload = json.dumps({"format": FORMAT_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _range(cfg: WarehouseConfig, name: str, low: float = 0.0) -> None:
    lo, hi = getattr(cfg, name)
    require(
        low <= lo <= hi, f"data.warehouse.{name}", f"must be a (min, max) pair with {low} <= min <= max, got {(lo, hi)}"
    )


def validate(cfg: WarehouseConfig) -> None:
    """Fail at once, naming the field, for configs that cannot produce sensible data."""
    require(cfg.num_cameras >= 1, "data.warehouse.num_cameras", f"needs at least 1 camera, got {cfg.num_cameras}")
    w, h = cfg.image_size
    require(
        w >= cfg.stride and h >= cfg.stride,
        "data.warehouse.image_size",
        f"{(w, h)} is smaller than the network stride {cfg.stride}; use at least ({cfg.stride}, {cfg.stride})",
    )
    require(cfg.frames_per_scene >= 1, "data.warehouse.frames_per_scene", f"must be >= 1, got {cfg.frames_per_scene}")
    require(cfg.fps > 0, "data.warehouse.fps", f"must be positive, got {cfg.fps}")
    rw, rh = cfg.room_size
    require(rw >= 4.0 and rh >= 4.0, "data.warehouse.room_size", f"must be at least 4 m x 4 m, got {cfg.room_size}")
    require(cfg.wall_height > 0, "data.warehouse.wall_height", f"must be positive, got {cfg.wall_height}")
    for name in ("camera_height", "horizontal_fov_deg", "objects_per_scene", "racks", "pallets", "crates", "bins"):
        _range(cfg, name)
    require(
        cfg.camera_height[1] <= cfg.wall_height,
        "data.warehouse.camera_height",
        f"cameras hang on the walls: max height {cfg.camera_height[1]} must be <= wall_height {cfg.wall_height}",
    )
    require(cfg.horizontal_fov_deg[1] < 170, "data.warehouse.horizontal_fov_deg", "must stay below 170 degrees")
    require(
        len(cfg.class_weights) == len(CLASSES) and min(cfg.class_weights) >= 0 and sum(cfg.class_weights) > 0,
        "data.warehouse.class_weights",
        f"needs {len(CLASSES)} non-negative weights ({', '.join(CLASSES)}) with a positive sum",
    )
    require(0 <= cfg.enter_fraction <= 1, "data.warehouse.enter_fraction", "must lie in [0, 1]")
    require(0 <= cfg.exit_probability <= 1, "data.warehouse.exit_probability", "must lie in [0, 1]")
    require(cfg.noise_std >= 0, "data.warehouse.noise_std", "must be >= 0")
    unknown = set(cfg.scenes) - set(SPLITS)
    require(not unknown, "data.warehouse.scenes", f"unknown split(s) {sorted(unknown)}; valid: {list(SPLITS)}")
    require(
        all(n >= 0 for n in cfg.scenes.values()),
        "data.warehouse.scenes",
        f"scene counts must be >= 0, got {cfg.scenes}",
    )
    # Each object needs about 2 m^2 of floor to move without jamming; distractors take up to a third of the room.
    max_objects = int(rw * rh * (2 / 3) / 2.0)
    require(
        cfg.objects_per_scene[1] <= max_objects,
        "data.warehouse.objects_per_scene",
        f"at most {max_objects} objects fit in a {rw} m x {rh} m room, got {cfg.objects_per_scene[1]}",
    )
