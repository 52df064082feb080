"""Sparse4D model: training-step time (forward + dummy loss + backward), peak memory, inference frames per second;
then the default job's whole training step on warehouse batches, part by part.

Target on a 2-core CPU for the default (tiny) config at batch 2 x 4 cameras of 176 x 96: a training step under
150 ms and under 2 GB. Inputs are random images seen by a ring of cameras around a 16 m x 12 m room with 9 boxes
per slot (the synthetic warehouse's maximum), so denoising and the instance bank run as in training.
The job's step (``--job``, on by default for the tiny preset) is what Lightning runs: forward, the arm's loss
(Hungarian matching included), backward, gradient clipping and AdamW, on consecutive batches of the default data.
Run: ``python benchmarks/bench_model.py [--preset tiny|tao_r101] [--set field=value ...] [--no-job]``.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import math
import resource
import statistics
import time

import torch

from experiments.resources import describe_machine
from sparse4d_lab import geometry
from sparse4d_lab.data.config import CLASSES
from sparse4d_lab.model import Sparse4D, tao_r101, tiny


def make_batch(batch_size: int, cameras: int, width: int, height: int, frame: int, boxes: int) -> dict:
    """One frame per slot: cameras on an ellipse looking at the room centre, boxes on the floor moving at 1 m/s."""
    mats = []
    for n in range(cameras):
        angle = 2 * math.pi * n / cameras
        position = torch.tensor([7.5 * math.cos(angle), 5.5 * math.sin(angle), 4.0], dtype=torch.float64)
        extrinsic = geometry.look_at_extrinsic(position, torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64))
        mats.append(geometry.intrinsic_matrix(0.5 * width, 0.5 * width, width / 2, height / 2) @ extrinsic)
    projection = torch.stack(mats).float().expand(batch_size, -1, -1, -1)
    generator = torch.Generator().manual_seed(0)
    gt_boxes, gt_labels = [], []
    for _ in range(batch_size):
        xy = torch.rand(boxes, 2, generator=generator) * torch.tensor([12.0, 8.0]) - torch.tensor([6.0, 4.0])
        box = torch.zeros(boxes, geometry.BOX_DIM)
        box[:, :2] = xy + 0.1 * frame
        box[:, geometry.Z], box[:, geometry.L : geometry.H + 1] = 0.9, torch.tensor([0.5, 0.6, 1.8])
        box[:, geometry.VX] = 1.0
        gt_boxes.append(box)
        gt_labels.append(torch.randint(0, 4, (boxes,), generator=generator))
    return {
        "img": torch.rand(batch_size, cameras, 3, height, width, generator=generator),
        "projection_mat": projection,
        "image_wh": torch.tensor([width, height], dtype=torch.float32).expand(batch_size, cameras, 2),
        "timestamp": torch.full((batch_size,), 0.1 * frame, dtype=torch.float64),
        "ego_pose": torch.eye(4).expand(batch_size, 4, 4),
        "is_first": torch.full((batch_size,), frame == 0),
        "gt_boxes": gt_boxes,
        "gt_labels": gt_labels,
        "gt_ids": [torch.arange(boxes)] * batch_size,
    }


def dummy_loss(output) -> torch.Tensor:
    """Touches every output a real loss uses (all layers, denoising, quality, auxiliary losses)."""
    layers = list(output.layers) + (list(output.denoising.layers) if output.denoising is not None else [])
    total = sum(layer.cls.sigmoid().mean() + layer.anchor.abs().mean() for layer in layers)
    total = total + sum(layer.quality.mean() for layer in layers if layer.quality is not None)
    return total + sum(output.aux_losses.values())


def job_step_times(steps: int, arm: str, overrides: tuple[str, ...] = ()) -> dict[str, list[float]]:
    """Seconds per part of the default job's training step (config ``train`` with ``loss=ARM`` and ``overrides``),
    outside Lightning: the same module, batches, loss, clipping and optimizer; ``data`` is the wait for the batch."""
    from hydra import compose, initialize_config_module

    from experiments.build import build_components

    with initialize_config_module("experiments.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"loss={arm}", "paths.root=.", "paths.output_dir=.", *overrides])
    torch.manual_seed(int(cfg.seed))
    datamodule, module = build_components(cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    batches = iter(datamodule.train_dataloader())
    optimizer = module.optimizer()
    module.train()
    parts: dict[str, list[float]] = {k: [] for k in ("data", "forward", "loss", "backward", "optimizer", "step")}
    for step in range(steps + 3):
        wait = time.perf_counter()
        batch = next(batches)
        start = time.perf_counter()
        output = module.model(batch)
        forward = time.perf_counter()
        loss = module.criterion(output, batch["gt_boxes"], batch["gt_labels"], batch["gt_ids"]).total
        loss_end = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backward = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.trainer.gradient_clip_val, foreach=True)
        optimizer.step()
        end = time.perf_counter()
        if step >= 3:
            marks = (wait, start, forward, loss_end, backward, end)
            times = [b - a for a, b in itertools.pairwise(marks)] + [end - start]
            for key, seconds in zip(parts, times, strict=True):
                parts[key].append(seconds)
    return parts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            overrides[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            overrides[key] = value
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=["tiny", "tao_r101"], default="tiny")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="config overrides")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(176, 96), metavar=("W", "H"))
    parser.add_argument("--boxes", type=int, default=9, help="GT boxes per slot")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-job", dest="job", action="store_false", help="skip the default job's step")
    parser.add_argument("--arm", default="focal_onehot", help="loss arm of the job's step")
    args = parser.parse_args()
    print(describe_machine())
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = (tiny if args.preset == "tiny" else tao_r101)(**parse_overrides(args.set))
    model = Sparse4D(config, len(CLASSES))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"config {args.preset} {args.set or ''}: {params / 1e6:.2f} M parameters "
        f"({sum(p.numel() for p in model.backbone.parameters()) / 1e6:.2f} M backbone)"
    )
    w, h = args.size
    frames = [make_batch(args.batch_size, args.cameras, w, h, t, args.boxes) for t in range(4)]
    rss_before = peak_rss_mb()

    model.train()
    times = []
    for step in range(args.steps + 3):
        batch = frames[step % len(frames)]
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        dummy_loss(model(batch)).backward()
        if step >= 3:  # warm-up: allocator, first-frame bank state
            times.append(time.perf_counter() - start)
    rss_train = peak_rss_mb()
    print(
        f"training step (forward + backward), batch {args.batch_size} x {args.cameras} cameras of {w} x {h}: "
        f"median {statistics.median(times) * 1e3:.0f} ms, best {min(times) * 1e3:.0f} ms over {len(times)} steps "
        f"(target < 150 ms)"
    )
    print(f"peak RSS {rss_train:.0f} MB (before training {rss_before:.0f} MB; target < 2048 MB)")

    model.eval()
    times = []
    with torch.no_grad():
        for step in range(args.steps + 3):
            batch = frames[step % len(frames)]
            start = time.perf_counter()
            model.post_process(model(batch))
            if step >= 3:
                times.append(time.perf_counter() - start)
    per_batch = statistics.median(times)
    print(
        f"inference (forward + post-processing, no grad): median {per_batch * 1e3:.0f} ms per batch = "
        f"{args.batch_size / per_batch:.1f} frames/s ({args.cameras} cameras each)"
    )
    if args.job and args.preset == "tiny" and not args.set:
        parts = job_step_times(args.steps, args.arm)
        print(
            f"default job's training step ({args.arm}, warehouse batches): "
            + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in parts.items())
            + f" (medians over {len(parts['step'])} steps)"
        )


if __name__ == "__main__":
    main()
