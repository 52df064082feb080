"""The record every data source returns (the synthetic warehouse, MTMC, OVPKL): its own module, so that a reader
of real recordings or an exporter needs no part of the synthetic generator."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SceneData:
    """One scene as arrays. Per-frame ground truth is flat, frame ``t`` owning rows
    ``frame_offsets[t]:frame_offsets[t + 1]``. Real recordings fill ``images`` and ``depth`` with lazily
    decoding ``media.CameraFrames``, indexed like the arrays."""

    name: str
    images: np.ndarray  # [T, N, H, W, 3] uint8
    projection: np.ndarray  # [N, 4, 4] world -> image
    intrinsics: np.ndarray  # [N, 4, 4]
    extrinsics: np.ndarray  # [N, 4, 4]
    image_wh: np.ndarray  # [N, 2]
    timestamps: np.ndarray  # [T]
    frame_offsets: np.ndarray  # [T + 1]
    boxes: np.ndarray  # [S, 10]
    labels: np.ndarray  # [S]
    ids: np.ndarray  # [S]
    visibility: np.ndarray  # [S, N]
    distractor_boxes: np.ndarray  # [K, 10]
    distractor_kinds: np.ndarray  # [K] index into DISTRACTOR_KINDS
    room_size: np.ndarray  # [2]; (0, 0) when the room is unknown (real recordings)
    depth: np.ndarray | None = None  # [T, N, H, W] uint16 millimetres to the image plane
    boxes_2d: np.ndarray | None = None  # [S, N, 4] visible 2D box (x1, y1, x2, y2) per camera, NaN where unseen
    frame_ids: np.ndarray | None = None  # [T] source frame number of each frame (None: 0 .. T-1)
    cameras: np.ndarray | None = None  # [N] camera ids of real recordings

    @property
    def num_frames(self) -> int:
        return len(self.timestamps)

    def frame_slice(self, t: int) -> slice:
        return slice(int(self.frame_offsets[t]), int(self.frame_offsets[t + 1]))
