"""One synthetic warehouse scene: room, camera rig, static distractors and moving targets with smooth paths.

Everything is drawn from one ``numpy.random.Generator`` so a scene is a pure function of (config, split, index).
Bodies are unions of yaw-aligned cuboid parts given in unit-box coordinates (centre offsets in [-0.5, 0.5], sizes
in (0, 1]), so the ground-truth box encloses the rendered shape exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .. import geometry
from ..errors import ConfigError
from .appearance import BIN, CARDBOARD, CLASS_SPECS, GREYS, PLAIN, RACK_FRAME, STRIPES_H, STRIPES_V, WOOD, Rgb
from .config import CLASSES, WarehouseConfig

DISTRACTOR_KINDS: tuple[str, ...] = ("rack", "pallet", "crate", "bin")


@dataclass
class Body:
    """A rigid shape: its box ``[10]`` and its parts ``[P, 6]`` (unit-box centre, size), colours and patterns."""

    box: np.ndarray
    parts: np.ndarray
    colours: np.ndarray
    patterns: np.ndarray


@dataclass
class Scene:
    """A scene's fixed layout and the per-frame state of every target (``present [T, O]``, ``boxes [T, O, 10]``)."""

    name: str
    room_size: tuple[float, float]
    wall_height: float
    intrinsics: np.ndarray  # [N, 4, 4]
    extrinsics: np.ndarray  # [N, 4, 4] world -> camera
    image_wh: tuple[int, int]
    light: np.ndarray  # [3], unit vector towards the light
    floor_tint: np.ndarray  # [3]
    distractors: list[Body]
    distractor_kinds: list[str]
    objects: list[Body]  # box holds the size; position and yaw come from ``boxes``
    labels: np.ndarray  # [O]
    ids: np.ndarray  # [O]
    present: np.ndarray  # [T, O] bool
    boxes: np.ndarray  # [T, O, 10]
    timestamps: np.ndarray  # [T]

    @property
    def projection(self) -> np.ndarray:
        return self.intrinsics @ self.extrinsics


def _pick(rng: np.random.Generator, palette: list[Rgb]) -> np.ndarray:
    colour = np.asarray(palette[rng.integers(len(palette))])
    return np.clip(colour + rng.uniform(-0.06, 0.06, 3), 0.0, 1.0)


def _make_target(rng: np.random.Generator, label: int) -> Body:
    spec = CLASS_SPECS[CLASSES[label]]
    size = rng.uniform(spec.size_lo, spec.size_hi)
    slots = [_pick(rng, palette) for palette in spec.palettes]
    parts = np.array([p[:6] for p in spec.parts])
    colours = np.stack([slots[int(p[6])] for p in spec.parts])
    patterns = np.array([int(p[7]) for p in spec.parts])
    box = np.zeros(10)
    box[3:6] = size
    return Body(box, parts, colours, patterns)


def _rack(rng: np.random.Generator) -> tuple[np.ndarray, list, list, list]:
    size = np.array([rng.uniform(2.0, 3.5), rng.uniform(0.8, 1.0), rng.uniform(2.0, 2.8)])
    frame = _pick(rng, RACK_FRAME)
    parts, colours, patterns = [], [], []
    post_l, post_w = 0.06 / size[0], 0.08 / size[1]
    for sx in (-1, 1):
        for sy in (-1, 1):
            parts.append((sx * (0.5 - post_l / 2), sy * (0.5 - post_w / 2), 0.0, post_l, post_w, 1.0))
            colours.append(frame)
            patterns.append(PLAIN)
    levels = (-0.48, -0.05, 0.4)
    for z in levels:
        parts.append((0.0, 0.0, z, 1.0, 1.0, 0.03))
        colours.append(frame * 0.8)
        patterns.append(PLAIN)
        # Goods on each shelf: boxes and bins whose colours overlap the targets'.
        x = -0.45
        while x < 0.4:
            bl = rng.uniform(0.12, 0.3)
            if x + bl > 0.48:
                break
            if rng.random() < 0.8:
                bh = rng.uniform(0.1, 0.3)
                parts.append((x + bl / 2, rng.uniform(-0.1, 0.1), z + 0.015 + bh / 2, bl, rng.uniform(0.5, 0.8), bh))
                colours.append(_pick(rng, CARDBOARD if rng.random() < 0.6 else BIN))
                patterns.append(STRIPES_V if rng.random() < 0.5 else PLAIN)
            x += bl + 0.02
    return size, parts, colours, patterns


def _pallet(rng: np.random.Generator) -> tuple[np.ndarray, list, list, list]:
    base = 0.14
    load = rng.uniform(0.0, 1.4) if rng.random() < 0.7 else 0.0
    size = np.array([1.2, 1.0, base + load])
    parts = [(0.0, 0.0, -0.5 + base / size[2] / 2, 1.0, 1.0, base / size[2])]
    colours, patterns = [_pick(rng, WOOD)], [STRIPES_V]
    if load > 0:
        frac = load / size[2]
        parts.append((0.0, 0.0, 0.5 - frac / 2, rng.uniform(0.7, 0.95), rng.uniform(0.7, 0.95), frac))
        colours.append(_pick(rng, CARDBOARD + GREYS[:1]))
        patterns.append(STRIPES_H)
    return size, parts, colours, patterns


def _crate(rng: np.random.Generator) -> tuple[np.ndarray, list, list, list]:
    side = rng.uniform(0.5, 0.8)
    count = int(rng.integers(1, 4))
    size = np.array([side, side * rng.uniform(0.8, 1.0), side * count])
    parts = [(0.0, 0.0, -0.5 + (i + 0.5) / count, 1.0, 1.0, 1.0 / count - 0.01) for i in range(count)]
    colours = [_pick(rng, CARDBOARD + BIN) for _ in range(count)]
    return size, parts, colours, [STRIPES_H] * count


def _bin(rng: np.random.Generator) -> tuple[np.ndarray, list, list, list]:
    size = np.array([rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), rng.uniform(0.9, 1.6)])
    body = _pick(rng, BIN)
    parts = [(0.0, 0.0, -0.05, 0.9, 0.9, 0.9), (0.0, 0.0, 0.45, 1.0, 1.0, 0.1)]
    return size, parts, [body, body * 0.7], [STRIPES_V, PLAIN]


_DISTRACTOR_MAKERS = {"rack": _rack, "pallet": _pallet, "crate": _crate, "bin": _bin}


def _footprint_contains(boxes: np.ndarray, points: np.ndarray, margin: float) -> np.ndarray:
    """``[K, 10]`` boxes, ``[P, 2]`` points -> ``[P]``: point within ``margin`` of any footprint."""
    if len(boxes) == 0:
        return np.zeros(len(points), dtype=bool)
    rel = points[:, None, :] - boxes[None, :, :2]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    lx = rel[..., 0] * c + rel[..., 1] * s
    ly = -rel[..., 0] * s + rel[..., 1] * c
    return ((np.abs(lx) <= boxes[:, 3] / 2 + margin) & (np.abs(ly) <= boxes[:, 4] / 2 + margin)).any(1)


def _inside_room(points: np.ndarray, room: tuple[float, float], margin: float) -> np.ndarray:
    half = np.asarray(room) / 2 - margin
    return (np.abs(points) <= half).all(-1)


def _place_distractors(rng: np.random.Generator, cfg: WarehouseConfig) -> tuple[list[Body], list[str]]:
    bodies: list[Body] = []
    kinds: list[str] = []
    boxes = np.zeros((0, 10))
    counts = {
        k: int(rng.integers(lo, hi + 1))
        for k, (lo, hi) in zip(DISTRACTOR_KINDS, (cfg.racks, cfg.pallets, cfg.crates, cfg.bins), strict=True)
    }
    for kind in DISTRACTOR_KINDS:
        for _ in range(counts[kind]):
            size, parts, colours, patterns = _DISTRACTOR_MAKERS[kind](rng)
            for _attempt in range(100):
                yaw = rng.choice([0.0, math.pi / 2]) if kind == "rack" else rng.uniform(-math.pi, math.pi)
                half_extent = 0.5 * float(np.hypot(size[0], size[1]))
                centre = rng.uniform(-1, 1, 2) * (np.asarray(cfg.room_size) / 2 - half_extent - 0.3)
                box = np.array([*centre, size[2] / 2, *size, yaw, 0.0, 0.0, 0.0])
                # Keep a 1.2 m aisle between distractors so targets can pass.
                corners = geometry.bev_corners(torch.from_numpy(box)).numpy()
                clear = not _footprint_contains(boxes, np.vstack([corners, centre[None]]), 1.2).any()
                clear = clear and not _footprint_contains(box[None], boxes[:, :2], 1.2).any()
                if clear:
                    break
            else:
                continue  # no room left for this distractor: the scene simply has fewer
            boxes = np.vstack([boxes, box])
            bodies.append(Body(box, np.asarray(parts, float), np.asarray(colours, float), np.asarray(patterns)))
            kinds.append(kind)
    return bodies, kinds


def _make_rig(rng: np.random.Generator, cfg: WarehouseConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cameras high on the walls around the room, looking inward and down, placement jittered per scene."""
    w, h = cfg.image_size
    half = np.asarray(cfg.room_size) / 2 - 0.3
    offset = rng.uniform(0, 2 * math.pi)
    intrinsics, extrinsics = [], []
    for i in range(cfg.num_cameras):
        angle = offset + 2 * math.pi * i / cfg.num_cameras + rng.uniform(-0.25, 0.25)
        direction = np.array([math.cos(angle), math.sin(angle)])
        on_wall = direction * np.min(half / np.maximum(np.abs(direction), 1e-9))  # where the ray meets the walls
        position = np.array([*on_wall, rng.uniform(*cfg.camera_height)])
        target = np.array([*rng.uniform(-0.15, 0.15, 2) * cfg.room_size, rng.uniform(0.0, 0.5)])
        extrinsics.append(geometry.look_at_extrinsic(torch.from_numpy(position), torch.from_numpy(target)).numpy())
        fx = (w / 2) / math.tan(math.radians(rng.uniform(*cfg.horizontal_fov_deg)) / 2)
        cx, cy = w / 2 + rng.uniform(-2, 2), h / 2 + rng.uniform(-2, 2)
        intrinsics.append(geometry.intrinsic_matrix(fx, fx, cx, cy).numpy())
    return np.stack(intrinsics), np.stack(extrinsics)


class _Walker:
    """Steers one target between waypoints: limited turn rate, acceleration, stops, exits through doors."""

    def __init__(self, rng, body: Body, label: int, start: np.ndarray, yaw: float, enter_frame: int):
        spec = CLASS_SPECS[CLASSES[label]]
        self.rng, self.body, self.spec = rng, body, spec
        self.pos, self.yaw, self.speed = start.astype(float), yaw, 0.0
        self.cruise = rng.uniform(*spec.speed)
        self.enter_frame = enter_frame
        self.target: np.ndarray | None = None
        self.leaving = False
        self.gone = False
        self.wait = 0.0
        self.blocked = 0


class _Simulator:
    def __init__(self, rng: np.random.Generator, cfg: WarehouseConfig, distractors: np.ndarray):
        self.rng, self.cfg, self.distractors = rng, cfg, distractors
        self.dt = 1.0 / cfg.fps
        half = np.asarray(cfg.room_size) / 2
        # Two doors on random walls, 0.5 m inside the wall line.
        self.doors = []
        for _ in range(2):
            axis = int(rng.integers(2))
            side = rng.choice([-1.0, 1.0])
            door = np.zeros(2)
            door[axis] = side * (half[axis] - 0.5)
            door[1 - axis] = rng.uniform(-0.6, 0.6) * half[1 - axis]
            self.doors.append(door)

    def free(self, points: np.ndarray, margin: float = 0.45) -> np.ndarray:
        return _inside_room(points, self.cfg.room_size, 0.35) & ~_footprint_contains(self.distractors, points, margin)

    def segment_free(self, a: np.ndarray, b: np.ndarray) -> bool:
        steps = max(2, int(np.linalg.norm(b - a) / 0.2))
        return bool(self.free(a + np.linspace(0, 1, steps)[:, None] * (b - a)).all())

    def sample_free(self, others: list[np.ndarray], spacing: float) -> np.ndarray | None:
        half = np.asarray(self.cfg.room_size) / 2
        for _ in range(200):
            p = self.rng.uniform(-half, half)
            if self.free(p[None])[0] and all(np.linalg.norm(p - o) >= spacing for o in others):
                return p
        return None

    def new_target(self, w: _Walker) -> None:
        w.leaving = self.rng.random() < self.cfg.exit_probability
        if w.leaving:
            door = self.doors[int(self.rng.integers(len(self.doors)))]
            if self.segment_free(w.pos, door):
                w.target = door
                return
            w.leaving = False
        for _ in range(30):
            p = self.sample_free([], 0.0)
            if p is not None and self.segment_free(w.pos, p):
                w.target = p
                return
        w.target = w.pos.copy()  # boxed in for now: stay and try again later

    def step(self, w: _Walker, others: list[_Walker]) -> np.ndarray:
        """Advance one frame; returns the velocity applied, which is the frame's ground-truth velocity."""
        if w.target is None:
            self.new_target(w)
        if w.wait > 0:
            w.wait -= self.dt
            w.speed = 0.0
            return np.zeros(2)
        to_target = w.target - w.pos
        heading = math.atan2(to_target[1], to_target[0]) if np.linalg.norm(to_target) > 1e-6 else w.yaw
        err = (heading - w.yaw + math.pi) % (2 * math.pi) - math.pi
        w.yaw = (w.yaw + float(np.clip(err, -w.spec.turn_rate * self.dt, w.spec.turn_rate * self.dt)) + math.pi) % (
            2 * math.pi
        ) - math.pi
        desired = w.cruise * max(0.0, math.cos(err)) ** 2  # slow down in sharp turns
        w.speed += float(np.clip(desired - w.speed, -1.5 * self.dt, 1.0 * self.dt))
        velocity = w.speed * np.array([math.cos(w.yaw), math.sin(w.yaw)])
        nxt = w.pos + velocity * self.dt
        crowded = any(
            np.linalg.norm(nxt - o.pos) < 0.8 and np.linalg.norm(nxt - o.pos) < np.linalg.norm(w.pos - o.pos)
            for o in others
        )
        if crowded or not self.free(nxt[None], 0.3)[0]:
            w.speed, w.blocked = 0.0, w.blocked + 1
            if w.blocked > 8:
                w.blocked = 0
                self.new_target(w)
            return np.zeros(2)
        w.blocked = 0
        w.pos = nxt
        if np.linalg.norm(w.target - w.pos) < 0.3:
            if w.leaving:
                w.gone = True
            elif self.rng.random() < 0.3:
                w.wait = self.rng.uniform(1.0, 3.0)
                w.target = None
            else:
                w.target = None
        return velocity


def make_scene(cfg: WarehouseConfig, split: str, index: int) -> Scene:
    """Generate scene ``index`` of ``split``: a pure function of its arguments."""
    split_code = {"train": 0, "val": 1, "test": 2}[split]
    rng = np.random.default_rng([cfg.seed, split_code, index])
    intrinsics, extrinsics = _make_rig(rng, cfg)
    distractors, kinds = _place_distractors(rng, cfg)
    dboxes = np.stack([d.box for d in distractors]) if distractors else np.zeros((0, 10))
    sim = _Simulator(rng, cfg, dboxes)

    num = int(rng.integers(cfg.objects_per_scene[0], cfg.objects_per_scene[1] + 1))
    weights = np.asarray(cfg.class_weights) / np.sum(cfg.class_weights)
    labels = rng.choice(len(CLASSES), size=num, p=weights)
    walkers: list[_Walker] = []
    starts: list[np.ndarray] = []
    T = cfg.frames_per_scene
    for label in labels:
        body = _make_target(rng, int(label))
        enters = T > 1 and rng.random() < cfg.enter_fraction
        if enters:
            door = sim.doors[int(rng.integers(len(sim.doors)))]
            start, enter_frame = door.copy(), int(rng.integers(1, T))
            yaw = math.atan2(-door[1], -door[0])
        else:
            start = sim.sample_free(starts, 1.0)
            if start is None:
                raise ConfigError(
                    f"data.objects_per_scene: could not place {num} objects in scene {split}/{index}; "
                    "lower objects_per_scene or the distractor counts, or enlarge room_size"
                )
            enter_frame, yaw = 0, rng.uniform(-math.pi, math.pi)
            starts.append(start)
        walkers.append(_Walker(rng, body, int(label), start, yaw, enter_frame))

    present = np.zeros((T, num), dtype=bool)
    boxes = np.zeros((T, num, 10))
    for t in range(T):
        for i, w in enumerate(walkers):
            if w.gone or t < w.enter_frame:
                continue
            others = [o for o in walkers if o is not w and not o.gone and t >= o.enter_frame]
            position = w.pos.copy()
            velocity = sim.step(w, others)  # turns first, so the box heads where it moves
            present[t, i] = True
            boxes[t, i, :2] = position
            boxes[t, i, 2] = w.body.box[5] / 2
            boxes[t, i, 3:6] = w.body.box[3:6]
            boxes[t, i, 6] = w.yaw
            boxes[t, i, 7:9] = velocity
    return Scene(
        name=f"{split}_{index:04d}",
        room_size=tuple(cfg.room_size),
        wall_height=cfg.wall_height,
        intrinsics=intrinsics,
        extrinsics=extrinsics,
        image_wh=tuple(cfg.image_size),
        light=_unit(np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])),
        floor_tint=rng.uniform(0.9, 1.1, 3),
        distractors=distractors,
        distractor_kinds=kinds,
        objects=[w.body for w in walkers],
        labels=labels.astype(np.int64),
        ids=np.arange(num, dtype=np.int64) + 1000 * index,
        present=present,
        boxes=boxes,
        timestamps=np.arange(T) / cfg.fps,
    )


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)
