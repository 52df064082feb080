"""A scene of real MTMC size, made here: 4 cameras, 1920x1080, 30 fps H.264 (x264: GOP 250, CRF 23, veryfast).

The synthetic warehouse is rendered at a fifth of the size and scaled up, with sensor noise that changes every
frame (so the encoder spends bits on every frame, as on a recording); the calibration and ground truth are the
scene's own, scaled to the video size. ``python benchmarks/realsize_scene.py DIR`` writes ``DIR/train/<scene>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops

from sparse4d_lab.data import WarehouseConfig, render_scene
from sparse4d_lab.data.export import export_mtmc
from sparse4d_lab.data.scene_data import SceneData

SCALE = 5  # rendered at (384, 216), written at (1920, 1080)
NOISE_FIELDS = 7  # more than x264's 3 reference frames: the noise never repeats within a reference window


class _Camera:
    """One camera's frames at video size, made as the writer asks for them."""

    def __init__(self, images: np.ndarray, n: int, noise: np.ndarray):
        self.images, self.n, self.noise = images, n, noise
        t, _, h, w, c = images.shape
        self.shape = (t, h * SCALE, w * SCALE, c)

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.shape[0]):
            big = Image.fromarray(self.images[t, self.n]).resize(self.shape[2:0:-1], Image.Resampling.BILINEAR)
            yield np.asarray(ImageChops.add(big, self.noise[(t + self.n) % NOISE_FIELDS], offset=-128))


class _Upscaled:
    """``images[:, n]`` of a scene, SCALE x larger and noisy, without holding them all."""

    def __init__(self, images: np.ndarray, seed: int, noise_std: float):
        self.images = images
        t, n, h, w, c = images.shape
        self.shape = (t, n, h * SCALE, w * SCALE, c)
        rng = np.random.default_rng(seed)
        noise = np.clip(np.rint(rng.normal(128, noise_std, (NOISE_FIELDS, h * SCALE, w * SCALE))), 0, 255)
        self.noise = [Image.fromarray(field.astype(np.uint8)).convert("RGB") for field in noise]  # 128 = none

    def __getitem__(self, key: tuple[slice, int]) -> _Camera:
        return _Camera(self.images, key[1], self.noise)


def scaled(scene: SceneData, noise_std: float = 3.0) -> SceneData:
    """The scene as a SCALE x larger camera rig sees it (intrinsics, projections and 2D boxes scaled)."""
    s = np.diag([SCALE, SCALE, 1.0, 1.0])
    return dataclasses.replace(
        scene,
        images=_Upscaled(scene.images, 0, noise_std),
        intrinsics=s @ scene.intrinsics,
        projection=s @ scene.projection,
        image_wh=scene.image_wh * SCALE,
        boxes_2d=None if scene.boxes_2d is None else scene.boxes_2d * SCALE,
    )


def write_realsize_scene(root: Path, frames: int = 600, cameras: int = 4, seed: int = 7) -> Path:
    """``root/train/train_0000``: the scene folder (written once; a finished folder is kept)."""
    folder = root / "train" / "train_0000"
    if (folder / "ground_truth.json").exists():
        return folder
    cfg = WarehouseConfig(
        seed=seed, scenes={"train": 1}, frames_per_scene=frames, fps=30.0, num_cameras=cameras, image_size=(384, 216)
    )
    export_mtmc([scaled(render_scene(cfg, "train", 0))], root, "train", crf=23, preset="veryfast")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", type=Path)
    parser.add_argument("--frames", type=int, default=600)
    args = parser.parse_args()
    start = time.perf_counter()
    folder = write_realsize_scene(args.root, args.frames)
    print(f"{folder} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
