"""Synthetic warehouse: build time of the default data set, camera images rendered per second, batch load time.

Targets: the default data set builds in under 60 s on a 2-core CPU; loading a batch is never the bottleneck
(compare the per-batch load time with a training step). Run: ``python benchmarks/bench_data.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from experiments.resources import describe_machine
from sparse4d_lab.data import WarehouseConfig, WarehouseDataModule, ensure_dataset, render_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: one per core)")
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    print(describe_machine())
    cfg = WarehouseConfig()

    start = time.perf_counter()
    render_scene(cfg, "train", 0)
    one = time.perf_counter() - start
    images = cfg.frames_per_scene * cfg.num_cameras
    print(f"render, 1 process: {images} camera images of {cfg.image_size} in {one:.2f} s = {images / one:.0f} img/s")

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        ensure_dataset(cfg, cache, workers=args.workers)
        build = time.perf_counter() - start
        total = sum(cfg.scenes.values()) * images
        print(
            f"default data set: {sum(cfg.scenes.values())} scenes, {total} camera images, built in {build:.1f} s "
            f"({total / build:.0f} img/s; target < 60 s)"
        )

        start = time.perf_counter()
        ensure_dataset(cfg, cache)
        print(f"cache hit (verify every file's SHA-256): {time.perf_counter() - start:.2f} s")

        dm = WarehouseDataModule(cfg, batch_size=args.batch_size, cache_dir=cache)
        dm.prepare_data()
        dm.setup("fit")
        loader = dm.train_dataloader()
        start = time.perf_counter()
        count = sum(1 for _ in loader)
        per_batch = (time.perf_counter() - start) / count
        print(
            f"train loader: {count} batches of {args.batch_size} x {cfg.num_cameras} cameras, "
            f"{per_batch * 1e3:.2f} ms per batch (main process, no workers)"
        )


if __name__ == "__main__":
    main()
