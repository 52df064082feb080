"""``python -m sparse4d_lab.data preview --out PATH.png``: look at the synthetic data before training on it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from .config import SPLITS, ConfigError, WarehouseConfig
from .preview import preview
from .synthetic import load_split


def _config(pairs: list[str]) -> WarehouseConfig:
    """``field=value`` pairs (values in JSON, e.g. ``num_cameras=6``, ``image_size=[352,192]``) over the defaults."""
    fields = {f.name for f in dataclasses.fields(WarehouseConfig)}
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ConfigError(f"--set {pair!r}: expected FIELD=VALUE with FIELD one of {sorted(fields)}")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return WarehouseConfig(**overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse4d_lab.data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("preview", help="write a PNG of one frame: cameras with ground truth and a bird's-eye view")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--split", default="val", choices=SPLITS)
    p.add_argument("--scene", type=int, default=0, help="scene index within the split")
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--cache-dir", default=None, help="data cache folder (default: $SPARSE4D_LAB_CACHE or ~/.cache)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="data config overrides")
    args = parser.parse_args(argv)
    try:
        cfg = _config(args.set)
        count = cfg.scenes.get(args.split, 0)
        if not 0 <= args.scene < count:
            raise ConfigError(f"--scene {args.scene}: split {args.split!r} has scenes 0..{count - 1}")
        scene = load_split(cfg, args.split, args.cache_dir)[args.scene]
        print(preview(scene, args.frame, args.out))
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
