"""``python -m sparse4d_lab.data``: look at the data before training on it, or write it in the real-data layouts.

    preview --out P.png [--split val --scene 0 --frame 10] [--set num_cameras=6]      (the synthetic warehouse)
    preview --out P.png --mtmc ROOT [--split val --scene Warehouse_017] [--set frame_stride=30]
    preview --out P.png --ovpkl PATH [--split val --scene NAME] [--set heading=tao]
    export --layout mtmc|ovpkl --out DIR [--set 'scenes={"train": 2, "val": 1}']
    cache --mtmc ROOT [--split train val] [--set frame_stride=10 frame_cache=jpeg] [--workers 2]

``--set`` overrides fields of the data config in JSON (WarehouseConfig, MtmcConfig or OvpklConfig).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from rich.progress import Progress, TextColumn

from ..errors import ConfigError
from . import frame_cache
from .config import CLASSES, SPLITS, WarehouseConfig
from .export import export_mtmc, export_ovpkl
from .media import MediaError
from .mtmc import MtmcConfig, MtmcSource
from .ovpkl import OvpklConfig, OvpklSource
from .preview import preview
from .scene_data import SceneData
from .synthetic import load_split


def _config(cls: type, pairs: list[str], **given: Any) -> Any:
    """``field=value`` pairs (values in JSON, e.g. ``num_cameras=6``, ``image_size=[352,192]``) over the defaults."""
    fields = {f.name for f in dataclasses.fields(cls)}
    overrides = dict(given)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return cls(**overrides)


def _pick(names: list[str], scene: str, split: str) -> int:
    """Index of ``scene`` (an index or a name) among the split's scene names."""
    if scene.isdigit() and int(scene) < len(names):
        return int(scene)
    if scene in names:
        return names.index(scene)
    raise ConfigError(f"--scene {scene}: split {split!r} has scenes 0..{len(names) - 1}: {names}")


def _scene(args: argparse.Namespace) -> tuple[SceneData, tuple[str, ...]]:
    """The scene to preview and the class names of its labels."""
    if args.mtmc:
        source = MtmcSource(_config(MtmcConfig, args.set, root=args.mtmc))
        dirs = source.scene_dirs(args.split)
        return source.load(dirs[_pick([d.name for d in dirs], args.scene, args.split)]), source.classes
    if args.ovpkl:
        source = OvpklSource(_config(OvpklConfig, args.set, path=args.ovpkl))
        scenes = source.scenes(args.split)
        return scenes[_pick([s.name for s in scenes], args.scene, args.split)], source.classes
    cfg = _config(WarehouseConfig, args.set)
    index = _pick([f"{args.split}_{i:04d}" for i in range(cfg.scenes.get(args.split, 0))], args.scene, args.split)
    return load_split(cfg, args.split, args.cache_dir)[index], CLASSES


def cache(cfg: MtmcConfig, splits: list[str] | None, workers: int | None) -> int:
    """Build the frame cache of the splits' videos with a progress bar, saying first what it will cost."""
    if not cfg.frame_cache:
        raise ConfigError("data.frame_cache is null: set it to one of raw, jpeg (--set frame_cache=raw)")
    entries = MtmcSource(cfg).frame_entries(splits)
    todo = [e for e in entries if not frame_cache.is_cached(e, cfg.cache_dir)]
    print(f"frame cache {cfg.frame_cache} at {cfg.image_size}: {len(entries)} videos, {len(todo)} to build")
    print(f"estimate: {frame_cache.estimate(todo, workers)}", flush=True)
    columns = (*Progress.get_default_columns(), TextColumn("{task.completed:.0f}/{task.total:.0f} frames"))
    with Progress(*columns) as bar:
        task = bar.add_task("decoding", total=sum(frame_cache.decode_cost(e) for e in todo))
        frame_cache.build(todo, cfg.cache_dir, workers, lambda n: bar.advance(task, n))
    root = entries[0].folder(cfg.cache_dir).parent if entries else None
    print(f"done: {len(entries)} videos cached in {root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse4d_lab.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="write a PNG of one frame: cameras with ground truth and a bird's-eye view")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", default="val", choices=SPLITS)
    p.add_argument("--scene", default="0", help="scene index within the split, or its name")
    p.add_argument("--frame", type=int, default=0, help="frame index within the scene (after any frame stride)")
    p.add_argument("--cache-dir", default=None, help="data cache folder (default: $SPARSE4D_LAB_CACHE or ~/.cache)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--mtmc", metavar="ROOT", help="preview an MTMC_Tracking_2025 folder instead")
    source.add_argument("--ovpkl", metavar="PATH", help="preview a folder of OVPKL files instead")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="data config overrides")
    e = sub.add_parser("export", help="write the synthetic warehouse in the MTMC or OVPKL layout")
    e.add_argument("--layout", required=True, choices=("mtmc", "ovpkl"))
    e.add_argument("--out", required=True, help="folder to write (split folders inside)")
    e.add_argument("--cache-dir", default=None, help="data cache folder (default: $SPARSE4D_LAB_CACHE or ~/.cache)")
    e.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="synthetic data config overrides")
    c = sub.add_parser("cache", help="decode an MTMC folder's videos into the frame cache ahead of a study")
    c.add_argument("--mtmc", metavar="ROOT", required=True, help="the MTMC_Tracking_2025 folder")
    c.add_argument("--split", nargs="*", default=None, choices=SPLITS, help="splits to cache (default: all)")
    c.add_argument("--workers", type=int, default=None, help="videos decoded at a time (default: one per core)")
    c.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="data config overrides (as a job's)")
    args = parser.parse_args(argv)
    try:
        if args.command == "cache":
            return cache(_config(MtmcConfig, args.set, root=args.mtmc), args.split, args.workers)
        if args.command == "preview":
            scene, classes = _scene(args)
            print(preview(scene, args.frame, args.out, classes))
            return 0
        cfg = _config(WarehouseConfig, args.set)
        write = export_mtmc if args.layout == "mtmc" else export_ovpkl
        for split in SPLITS:
            if cfg.scenes.get(split, 0):
                for path in write(load_split(cfg, split, args.cache_dir), args.out, split):
                    print(path)
    except (ConfigError, ValueError, MediaError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
