"""Real video at speed: a real-size MTMC scene read directly and through the frame cache.

Prints, on a scene made here (``realsize_scene.py``: 4 cameras, 1920x1080, 30 fps H.264, GOP 250, 600 frames):
PyAV's decoding by thread type and resize filter; the cache's storage candidates (read time, disk, PSNR); 4-camera
samples through the project's ``MtmcSource`` / ``SequenceDataset`` / DataModule before (direct) and after (cache);
the cache's build time and disk, and the disk of the full MTMC training split; a tiny-model training step's data
share, MTMC through the cache against the synthetic warehouse.
Targets: cached stride-10 samples <= 12 ms (10x faster); the 2nd epoch and job decode nothing; data < 10 % of a step.
Run: ``python benchmarks/bench_realdata.py [--root DIR]`` (the scene is written to DIR once, ~4 min on 2 cores).
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
from bench_model import job_step_times
from PIL import Image
from realsize_scene import write_realsize_scene

from experiments.resources import describe_machine
from sparse4d_lab.data import frame_cache
from sparse4d_lab.data.datamodule import SceneDataModule
from sparse4d_lab.data.dataset import SequenceDataset
from sparse4d_lab.data.media import VideoFrames, encode_image
from sparse4d_lab.data.mtmc import MtmcConfig, MtmcSource

OUT_WH = (704, 384)  # data=mtmc's image_size
TRAIN_SPLIT_FRAMES = 111 * 9000 * 8 // 10  # MTMC's training split: 111 scenes of 9000 frames, 8 cameras, stride 10


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


# ----------------------------------------------------------------------------------------------------------------
# Decoding: thread type and resize filter
# ----------------------------------------------------------------------------------------------------------------


def decode_fps(video: Path, frames: int, thread_type: str | None, resize: str = "BILINEAR") -> float:
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        if thread_type is not None:
            stream.thread_type = thread_type
        start = time.perf_counter()
        for i, frame in enumerate(container.decode(stream)):
            frame.to_ndarray(format="rgb24", width=OUT_WH[0], height=OUT_WH[1], interpolation=resize)
            if i + 1 == frames:
                break
        return frames / (time.perf_counter() - start)


def bench_decoding(videos: list[Path], frames: int) -> None:
    with av.open(str(videos[0])) as container:
        default = container.streams.video[0].thread_type
    print(f"\nPyAV decode + resize to {OUT_WH}, {frames} frames of 1080p (PyAV's default thread_type: {default}):")
    print("| thread_type | 1 video, fps | 2 videos at once (threads), fps in all |\n|---|---|---|")
    for kind in ("NONE", "SLICE", "FRAME", "AUTO"):
        one = decode_fps(videos[0], frames, kind)
        rates: list[float] = []

        def run(video: Path, kind: str = kind, rates: list[float] = rates) -> None:
            rates.append(decode_fps(video, frames, kind))

        pair = [threading.Thread(target=run, args=(v,)) for v in videos[:2]]
        for t in pair:
            t.start()
        for t in pair:
            t.join()
        print(f"| {kind} | {one:.0f} | {sum(rates):.0f} |")
    with av.open(str(videos[0])) as container:
        decoded = [f for _, f in zip(range(30), container.decode(video=0), strict=False)]
    reference = [
        np.asarray(f.to_image().resize(OUT_WH, Image.Resampling.BOX)) for f in decoded
    ]  # area average of the full-size RGB: what every pixel of the small image should be
    print("\nresize filter (swscale, 1080p -> model size): ms per frame, PSNR against the area average")
    print("| filter | ms | PSNR dB |\n|---|---|---|")
    for name in ("FAST_BILINEAR", "BILINEAR", "BICUBIC", "AREA", "LANCZOS"):
        start = time.perf_counter()
        small = [f.to_ndarray(format="rgb24", width=OUT_WH[0], height=OUT_WH[1], interpolation=name) for f in decoded]
        ms = (time.perf_counter() - start) / len(decoded) * 1e3
        quality = statistics.mean(psnr(s, r) for s, r in zip(small, reference, strict=True))
        print(f"| {name} | {ms:.2f} | {quality:.1f} |")


# ----------------------------------------------------------------------------------------------------------------
# Storage candidates at model size
# ----------------------------------------------------------------------------------------------------------------


def _encoded(frames: list[np.ndarray], fmt: str, quality: int = 95) -> list[bytes]:
    options = {"quality": quality} if fmt == "JPEG" else {"compress_level": 1}
    return [encode_image(frame, fmt, **options) for frame in frames]


def bench_formats(frames: list[np.ndarray], tmp: Path) -> None:
    """Read ms per frame (in order and shuffled), disk per frame and PSNR against the direct read."""
    print(f"\nstorage candidates, {len(frames)} frames of {OUT_WH} (camera 0, stride 10):")
    print("| format | ms/frame in order | ms/frame shuffled | kB/frame | PSNR dB |\n|---|---|---|---|---|")
    order = list(range(len(frames)))
    shuffled = random.Random(0).sample(order, len(order))
    raw = tmp / "raw.npy"
    np.save(raw, np.stack(frames))
    view = np.load(raw, mmap_mode="r")
    seq = timed(lambda: [np.array(view[i]) for i in order]) / len(frames) * 1e3
    rnd = timed(lambda: [np.array(view[i]) for i in shuffled]) / len(frames) * 1e3
    size = raw.stat().st_size / len(frames) / 1e3
    print(f"| raw .npy, memory-mapped | {seq:.3f} | {rnd:.3f} | {size:.0f} | lossless |")
    for label, fmt, quality in (("JPEG q95", "JPEG", 95), ("JPEG q90", "JPEG", 90), ("PNG (level 1)", "PNG", 0)):
        blobs = _encoded(frames, fmt, quality)

        def decode(i: int, blobs: list[bytes] = blobs) -> np.ndarray:
            with Image.open(io.BytesIO(blobs[i])) as image:
                return np.asarray(image.convert("RGB"))

        seq = timed(lambda d=decode: [d(i) for i in order]) / len(frames) * 1e3
        rnd = timed(lambda d=decode: [d(i) for i in shuffled]) / len(frames) * 1e3
        quality_db = statistics.mean(psnr(decode(i), frames[i]) for i in order)
        size = sum(map(len, blobs)) / len(frames) / 1e3
        print(f"| {label} | {seq:.3f} | {rnd:.3f} | {size:.0f} | {quality_db:.1f} |")
    stack = np.stack(frames)
    for label, gop, crf in (("H.264 intra (every frame a keyframe), CRF 18", 1, 18), ("H.264 GOP 10, CRF 18", 10, 18)):
        path = tmp / f"g{gop}.mp4"
        with av.open(str(path), "w") as container:  # x264 with a short keyframe interval, at model size
            stream = container.add_stream("libx264", rate=30)
            stream.height, stream.width = stack.shape[1:3]
            stream.pix_fmt, stream.options = "yuv420p", {"crf": str(crf), "g": str(gop), "bf": "0"}
            for frame in stack:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        reader = VideoFrames(path, 30.0, OUT_WH, gop_guess=gop)
        first = [reader.read(i) for i in order]
        reader.close()
        reader = VideoFrames(path, 30.0, OUT_WH, gop_guess=gop)
        seq = timed(lambda r=reader: [r.read(i) for i in order]) / len(frames) * 1e3
        rnd = timed(lambda r=reader: [r.read(i) for i in shuffled]) / len(frames) * 1e3
        reader.close()
        quality_db = statistics.mean(psnr(f, g) for f, g in zip(first, frames, strict=True))
        print(f"| {label} | {seq:.3f} | {rnd:.3f} | {path.stat().st_size / len(frames) / 1e3:.0f} | {quality_db:.1f} |")


# ----------------------------------------------------------------------------------------------------------------
# Samples through the project's readers
# ----------------------------------------------------------------------------------------------------------------


def source(root: Path, cache: Path, stride: int, fmt: str | None) -> MtmcSource:
    splits = {"train": ("train",), "val": ("train",), "test": ("train",)}
    return MtmcSource(
        MtmcConfig(root=str(root), splits=splits, frame_stride=stride, frame_cache=fmt, cache_dir=str(cache))
    )


def ms_per_sample(data: SequenceDataset, order: list[int]) -> tuple[float, float]:
    """Mean and worst milliseconds per 4-camera sample, read in ``order``."""
    times = []
    for i in order:
        start = time.perf_counter()
        data[i]
        times.append(time.perf_counter() - start)
    return statistics.mean(times) * 1e3, max(times) * 1e3


def datamodule_epochs(src: MtmcSource, workers: int, steps: int = 12, epochs: int = 2) -> list[float]:
    """ms per sample over the first ``steps`` batches of each training epoch (batch 2 of clips of 30 frames: the
    scene's two halves, so the slots read frames 300 source frames apart)."""
    dm = SceneDataModule(src, batch_size=2, num_workers=workers, clip_len=30)
    dm.setup("fit")
    loader = dm.train_dataloader()
    result = []
    for epoch in range(epochs):
        loader.batch_sampler.set_epoch(epoch)
        start = time.perf_counter()
        samples = sum(len(batch["scene"]) for batch, _ in zip(loader, range(steps), strict=False))
        result.append((time.perf_counter() - start) / samples * 1e3)
    return result


def access_table(root: Path, cache: Path, fmt: str | None) -> None:
    label = "direct (no cache)" if fmt is None else f"frame cache {fmt}"
    print(f"\n4-camera samples of {OUT_WH}, {label}:")
    print("| access | ms / sample (worst) |\n|---|---|")
    for stride, count in ((1, 60), (10, 60), (30, 20)):
        data = SequenceDataset(source(root, cache, stride, fmt).scenes("train"))
        mean, worst = ms_per_sample(data, list(range(min(count, len(data)))))
        print(f"| sequential, frame_stride={stride} | {mean:.1f} ({worst:.0f}) |")
    data = SequenceDataset(source(root, cache, 10, fmt).scenes("train"))
    mean, worst = ms_per_sample(data, random.Random(0).sample(range(len(data)), min(12, len(data))))
    print(f"| random frame order, stride 10 | {mean:.1f} ({worst:.0f}) |")
    for workers in (0, 2):
        epochs = datamodule_epochs(source(root, cache, 10, fmt), workers)
        print(f"| DataModule stride 10, num_workers={workers}: epoch 0 / 1 | {epochs[0]:.1f} / {epochs[1]:.1f} |")


def bench_cache_build(root: Path, cache: Path) -> None:
    print("\nframe cache build, stride 10 (4 videos, 2 at a time), and a second job's check of it:")
    print("| format | build s | MB | kB / frame | 2nd job: verify s | MTMC train split (799k frames) |")
    print("|---|---|---|---|---|---|")
    for fmt in frame_cache.FORMATS:
        src = source(root, cache, 10, fmt)
        entries = src.frame_entries(["train"])
        build = timed(lambda s=src: s.prepare())
        frame_cache._VERIFIED.clear()  # a new process: it checks every entry against its manifest
        verify = timed(lambda s=src: s.prepare())
        size = sum(f.stat().st_size for e in entries for f in e.folder(cache).iterdir())
        frames = sum(len(e.frames) for e in entries)
        split_gb = size / frames * TRAIN_SPLIT_FRAMES / 1e9
        per_frame = size / frames / 1e3
        print(f"| {fmt} | {build:.1f} | {size / 1e6:.0f} | {per_frame:.0f} | {verify:.2f} | {split_gb:.0f} GB |")
        direct = SequenceDataset(source(root, cache, 10, None).scenes("train"))
        cached = SequenceDataset(src.scenes("train"))
        pairs = [(direct[i]["img"].numpy(), cached[i]["img"].numpy()) for i in range(0, len(direct), 6)]
        quality = statistics.mean(psnr(a * 255, b * 255) for a, b in pairs)
        print(f"  {fmt}: PSNR against the direct read {quality:.1f} dB over {len(pairs)} samples")


def bench_training(root: Path, cache: Path, steps: int) -> None:
    print(f"\ntiny-model training step (loss_fix's focal_onehot, batch 2), medians over {steps} steps:")
    print("| data | image size | data ms | step ms | data share |\n|---|---|---|---|---|")
    mtmc = [
        "data=mtmc",
        f"data.root={root}",
        f"data.cache_dir={cache}",
        "data.frame_stride=10",
        "data.splits={train: [train], val: [train], test: [train]}",
        "train.clip_len=30",
    ]
    runs = (
        ("synthetic warehouse", "176x96", []),
        ("MTMC scene, frame cache raw", "176x96", [*mtmc, "data.image_size=[176,96]"]),
        ("MTMC scene, frame cache raw", "704x384", mtmc),
        ("MTMC scene, no cache", "704x384", [*mtmc, "data.frame_cache=null"]),
    )
    for label, size, overrides in runs:
        parts = job_step_times(steps, "focal_onehot", tuple(overrides))
        data, step = statistics.median(parts["data"]) * 1e3, statistics.median(parts["step"]) * 1e3
        print(f"| {label} | {size} | {data:.1f} | {step:.0f} | {data / (data + step):.1%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "sparse4d_lab_realsize")
    parser.add_argument("--decode-frames", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20)
    parts = ("decoding", "formats", "direct", "cache", "training")
    parser.add_argument("--only", nargs="*", choices=parts, default=parts, help="parts to run (default: all)")
    args = parser.parse_args()
    print(describe_machine())
    start = time.perf_counter()
    folder = write_realsize_scene(args.root)
    videos = sorted((folder / "videos").glob("*.mp4"))
    with av.open(str(videos[0])) as container:
        stream = container.streams.video[0]
        print(
            f"scene {folder} (ready in {time.perf_counter() - start:.0f} s): {len(videos)} videos "
            f"{stream.width}x{stream.height} {float(stream.average_rate):.0f} fps, {stream.frames} frames, "
            f"{stream.bit_rate / 1e6:.1f} Mbit/s"
        )
    if "decoding" in args.only:
        bench_decoding(videos, args.decode_frames)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        if "formats" in args.only:
            reader = VideoFrames(videos[0], 30.0, OUT_WH)
            bench_formats([reader.read(i) for i in range(0, 600, 10)], Path(tmp))
            reader.close()
        if "direct" in args.only:
            access_table(args.root, cache, None)
        if "cache" in args.only:
            bench_cache_build(args.root, cache)
            access_table(args.root, cache, "raw")
            access_table(args.root, cache, "jpeg")
        if "training" in args.only:
            bench_training(args.root, cache, args.steps)


if __name__ == "__main__":
    main()
