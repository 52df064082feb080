"""Training throughput of the default model: samples (frames of every camera) per second against batch size, threads
and image size, on the whole training step (forward, the arm's loss under ``semantics=tao``, backward, clipping,
fused AdamW).

The tiny model's step is dominated by the cost of its many small ops, not by arithmetic, so a larger batch may come
nearly free per sample; this measures how nearly. Compare figures as ratios within one run (machines differ).
Run: ``python benchmarks/bench_throughput.py [--batch-sizes 1 2 4 8] [--threads 1 2] [--sizes 176x96 352x192]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_model import make_batch

from experiments.resources import describe_machine
from sparse4d_lab.data.config import CLASSES
from sparse4d_lab.model import Sparse4D, tiny
from sparse4d_lab.semantics import profile
from sparse4d_lab.supervision.criterion import Sparse4DCriterion
from sparse4d_lab.supervision.schemes import build_scheme


def step_seconds(batch_size: int, width: int, height: int, steps: int) -> float:
    """Median seconds of one whole training step at this batch size and image size (4 cameras, 9 boxes a slot)."""
    torch.manual_seed(0)
    rules = profile("tao")
    model = Sparse4D(tiny(**rules["model"]), len(CLASSES)).train()
    criterion = Sparse4DCriterion(build_scheme("focal_onehot", 4), **rules["criterion"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    frames = [make_batch(batch_size, 4, width, height, t, 9) for t in range(4)]
    times = []
    for step in range(steps + 3):
        batch = frames[step % len(frames)]
        start = time.perf_counter()
        output = model(batch)
        loss = criterion(output, batch["gt_boxes"], batch["gt_labels"], batch["gt_ids"]).total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 35.0, foreach=True)
        optimizer.step()
        if step >= 3:  # warm-up: allocator, first-frame bank state
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sizes", nargs="+", default=["176x96"], help="image sizes WxH")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    print(describe_machine())
    print(f"{'size':>8} {'threads':>7} {'batch':>5} {'step ms':>8} {'samples/s':>9} {'vs batch 1':>10}")
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        for threads in args.threads:
            torch.set_num_threads(threads)
            base = None
            for batch_size in args.batch_sizes:
                seconds = step_seconds(batch_size, width, height, args.steps)
                rate = batch_size / seconds
                base = rate if base is None else base
                print(f"{size:>8} {threads:>7} {batch_size:>5} {seconds * 1e3:>8.0f} {rate:>9.2f} {rate / base:>9.2f}x")


if __name__ == "__main__":
    main()
