"""The synthetic multi-camera warehouse data set: generate, render, cache on disk, load.

The cache lives in ``<cache_dir>/warehouse-<config digest>/``: one ``.npz`` per scene and a ``manifest.json``
written last with every file's SHA-256. A cache whose manifest is missing or whose files do not match it is
rebuilt, never used. Builds happen in a temporary folder renamed into place, under a file lock, so concurrent jobs
(a study's workers, DDP ranks) build once and never see a half-written cache.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..checksum import file_sha256
from ..locks import file_lock
from .config import FORMAT_VERSION, SPLITS, WarehouseConfig, default_cache_dir
from .render import depth_map, finish_image, make_camera, render_background, render_frame, visible_rects
from .scene import DISTRACTOR_KINDS, make_scene
from .scene_data import SceneData

log = logging.getLogger(__name__)
PARALLEL_PIXELS = 20_000_000  # pixels to render (~12 s on one core) from which worker processes pay off


def render_scene(cfg: WarehouseConfig, split: str, index: int) -> SceneData:
    """Generate and render one scene; a pure function of its arguments."""
    scene = make_scene(cfg, split, index)
    cameras = [make_camera(k, e, scene.image_wh) for k, e in zip(scene.intrinsics, scene.extrinsics, strict=True)]
    backgrounds = [render_background(scene, cam) for cam in cameras]
    noise_rng = np.random.default_rng([cfg.seed, SPLITS.index(split), index, 1])
    T, N = cfg.frames_per_scene, cfg.num_cameras
    w, h = cfg.image_size
    images = np.zeros((T, N, h, w, 3), dtype=np.uint8)
    depth = np.zeros((T, N, h, w), dtype=np.uint16) if cfg.with_depth else None
    boxes, labels, ids, visibility, boxes_2d, offsets = [], [], [], [], [], [0]
    for t in range(T):
        alive = np.flatnonzero(scene.present[t])
        frame_boxes = scene.boxes[t, alive]
        bodies = [scene.objects[i] for i in alive]
        vis = np.zeros((len(alive), N))
        rects = np.full((len(alive), N, 4), np.nan)
        for n, (cam, background) in enumerate(zip(cameras, backgrounds, strict=True)):
            canvas, vis[:, n] = render_frame(scene, cam, background, frame_boxes, bodies)
            rects[:, n] = visible_rects(canvas, len(alive))
            images[t, n] = finish_image(canvas, noise_rng, cfg.noise_std)
            if depth is not None:
                depth[t, n] = np.clip(np.round(depth_map(canvas, cam) * 1000.0), 0, 65535).astype(np.uint16)
        boxes.append(frame_boxes)
        labels.append(scene.labels[alive])
        ids.append(scene.ids[alive])
        visibility.append(vis)
        boxes_2d.append(rects)
        offsets.append(offsets[-1] + len(alive))
    distractors = [d.box for d in scene.distractors]
    return SceneData(
        name=scene.name,
        images=images,
        projection=scene.projection,
        intrinsics=scene.intrinsics,
        extrinsics=scene.extrinsics,
        image_wh=np.tile(np.asarray(cfg.image_size, dtype=np.float64), (N, 1)),
        timestamps=scene.timestamps,
        frame_offsets=np.asarray(offsets, dtype=np.int64),
        boxes=np.concatenate(boxes).reshape(-1, 10),
        labels=np.concatenate(labels).astype(np.int64),
        ids=np.concatenate(ids).astype(np.int64),
        visibility=np.concatenate(visibility).reshape(-1, N),
        distractor_boxes=np.stack(distractors) if distractors else np.zeros((0, 10)),
        distractor_kinds=np.array([DISTRACTOR_KINDS.index(k) for k in scene.distractor_kinds], dtype=np.int64),
        room_size=np.asarray(scene.room_size, dtype=np.float64),
        depth=depth,
        boxes_2d=np.concatenate(boxes_2d).reshape(-1, N, 4),
    )


def _save(data: SceneData, path: Path) -> None:
    arrays = {k: v for k, v in vars(data).items() if isinstance(v, np.ndarray)}
    with open(path, "wb") as f:
        np.savez(f, name=np.array(data.name), **arrays)


def _load(path: Path) -> SceneData:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return SceneData(name=str(arrays.pop("name")), **arrays)


def _verify(root: Path, cfg: WarehouseConfig) -> bool:
    """True only if the manifest matches this config and every file matches its recorded hash."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
        if manifest.get("format") != FORMAT_VERSION or manifest.get("digest") != cfg.digest():
            return False
        expected = {f"{s}_{i:04d}.npz" for s, n in cfg.scenes.items() for i in range(n)}
        files = manifest["files"]
        return set(files) == expected and all(file_sha256(root / name) == digest for name, digest in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _build_one(cfg: WarehouseConfig, split: str, index: int, folder: Path) -> tuple[str, str]:
    name = f"{split}_{index:04d}.npz"
    _save(render_scene(cfg, split, index), folder / name)
    return name, file_sha256(folder / name)


def _build_parallel(cfg: WarehouseConfig, jobs: list[tuple[str, int]], folder: Path, workers: int | None):
    """Scenes are independent pure functions, so rendering them in parallel changes no byte. By default small data
    is rendered in this process: a worker re-imports torch and the caller's main module first (seconds)."""
    if workers is None:
        pixels = len(jobs) * cfg.frames_per_scene * cfg.num_cameras * cfg.image_size[0] * cfg.image_size[1]
        workers = (os.cpu_count() or 1) if pixels >= PARALLEL_PIXELS else 1
    workers = min(workers, len(jobs))
    if workers <= 1:
        return [_build_one(cfg, split, index, folder) for split, index in jobs]
    # spawn, not fork: forking a process that already ran torch's thread pools can deadlock. A child also sets its
    # parent's default start method, which in a joblib worker (a study's jobs side by side) is "loky", unknown there.
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork", "spawn", "forkserver"):
        multiprocessing.set_start_method("spawn", force=True)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_build_one, *zip(*[(cfg, s, i, folder) for s, i in jobs], strict=True)))


def ensure_dataset(cfg: WarehouseConfig, cache_dir: str | Path | None = None, workers: int | None = None) -> Path:
    """Return the folder of a verified cache for ``cfg``, building (or rebuilding) it if needed.

    ``workers`` processes render scenes in parallel (default: one per CPU core, one for small data).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = cache / f"warehouse-{cfg.digest()}"
    with file_lock(cache / f"warehouse-{cfg.digest()}.lock"):
        if root.exists() and _verify(root, cfg):
            return root
        if root.exists():
            log.warning("cache %s is corrupt or partial: rebuilding it", root)
            shutil.rmtree(root)
        tmp = cache / f".tmp-warehouse-{cfg.digest()}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        jobs = [(split, i) for split in SPLITS for i in range(cfg.scenes.get(split, 0))]
        files = dict(_build_parallel(cfg, jobs, tmp, workers))
        manifest = {"format": FORMAT_VERSION, "digest": cfg.digest(), "config": cfg.to_dict(), "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        tmp.rename(root)
        return root


def load_split(cfg: WarehouseConfig, split: str, cache_dir: str | Path | None = None) -> list[SceneData]:
    """All scenes of one split, from a verified cache."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    root = ensure_dataset(cfg, cache_dir)
    try:
        return [_load(root / f"{split}_{i:04d}.npz") for i in range(cfg.scenes.get(split, 0))]
    except (OSError, ValueError, zipfile.BadZipFile) as err:  # changed on disk after verification
        raise RuntimeError(f"cache {root} became unreadable ({err}); delete it to rebuild") from err
