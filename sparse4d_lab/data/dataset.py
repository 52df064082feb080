"""Frames of multi-camera sequences as the batch contract of the design (one frame of one sequence per slot)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .scene_data import SceneData

# Batch keys stacked into tensors; everything else is collated into per-slot lists.
STACKED = (
    "img",
    "projection_mat",
    "image_wh",
    "timestamp",
    "ego_pose",
    "sequence_id",
    "frame_idx",
    "is_first",
    "depth",
)


class SequenceDataset(Dataset):
    """Indexes every frame of every scene. An index is an ``int`` or an ``(int, is_first)`` pair from the sampler.

    ``is_first`` marks where a batch slot starts a sequence (or a clip of one): the instance bank resets there.
    Without the sampler's flag, a frame is first exactly when it is frame 0 of its scene.
    """

    def __init__(self, scenes: Sequence[SceneData]):
        self.scenes = list(scenes)
        self.lengths = [s.num_frames for s in self.scenes]
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Global frame index -> (scene index, frame index)."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame index {index} out of range [0, {len(self)})")
        scene = int(np.searchsorted(self.starts, index, side="right") - 1)
        return scene, index - int(self.starts[scene])

    def __getitem__(self, item: int | tuple[int, bool]) -> dict[str, Any]:
        index, is_first = item if isinstance(item, tuple) else (item, None)
        s, t = self.locate(int(index))
        scene = self.scenes[s]
        rows = scene.frame_slice(t)
        images = torch.from_numpy(scene.images[t]).permute(0, 3, 1, 2).float().div_(255.0)
        sample = {
            "img": images,  # [N, 3, H, W] in [0, 1]
            "projection_mat": torch.from_numpy(scene.projection).float(),
            "image_wh": torch.from_numpy(scene.image_wh).float(),
            "timestamp": torch.tensor(scene.timestamps[t], dtype=torch.float64),
            "ego_pose": torch.eye(4),  # static rig: ego frame == world frame
            "sequence_id": torch.tensor(s),
            "frame_idx": torch.tensor(t),
            "is_first": torch.tensor(t == 0 if is_first is None else bool(is_first)),
            "gt_boxes": torch.from_numpy(scene.boxes[rows]).float(),
            "gt_labels": torch.from_numpy(scene.labels[rows]),
            "gt_ids": torch.from_numpy(scene.ids[rows]),
            "gt_visibility": torch.from_numpy(scene.visibility[rows]).float(),
            "distractor_boxes": torch.from_numpy(scene.distractor_boxes).float(),
            "scene": scene.name,
        }
        if scene.depth is not None:
            sample["depth"] = torch.from_numpy(scene.depth[t].astype(np.float32) / 1000.0)
        return sample

    def gt_boxes(self) -> np.ndarray:
        """Every ground-truth box of every frame ``[S, 10]``: what anchor k-means and class-mean sizes need."""
        return np.concatenate([s.boxes for s in self.scenes]) if self.scenes else np.zeros((0, 10))

    def gt_labels(self) -> np.ndarray:
        return np.concatenate([s.labels for s in self.scenes]) if self.scenes else np.zeros(0, np.int64)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the fixed-size fields into ``[B, ...]`` tensors; keep per-slot lists for the variable-size ones."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if key in STACKED else values
    return batch
