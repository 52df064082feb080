"""A picture of one frame: every camera with the projected ground truth, and a bird's-eye view of the room.

Works for any SceneData, synthetic or real: projected boxes that sit on the objects in the images are the proof
that calibration, box convention and image resizing agree. Where the data has visible 2D boxes (MTMC), they are
drawn dashed.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Polygon, Rectangle

from .. import geometry
from .config import CLASSES
from .scene import DISTRACTOR_KINDS
from .scene_data import SceneData

CLASS_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4")
# Box edges as corner index pairs (see geometry.box_corners): bottom, top, verticals.
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def _colour(label: int) -> str:
    return CLASS_COLOURS[label % len(CLASS_COLOURS)]


def _draw_camera(ax, data: SceneData, t: int, n: int, name: str) -> None:
    ax.imshow(data.images[t, n])
    rows = data.frame_slice(t)
    if data.boxes_2d is not None:
        for rect, label in zip(data.boxes_2d[rows][:, n], data.labels[rows], strict=True):
            if np.isfinite(rect).all():
                x1, y1, x2, y2 = rect
                ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ls="--", lw=0.5, color=_colour(label)))
    boxes = torch.from_numpy(data.boxes[rows])
    if len(boxes):
        corners = geometry.box_corners(boxes)  # [M, 8, 3]
        proj = torch.from_numpy(data.projection[n : n + 1]).expand(len(boxes), 1, 4, 4)
        pix, _, front = geometry.project_points(corners, proj)
        for m, (label, ident) in enumerate(zip(data.labels[rows], data.ids[rows], strict=True)):
            if not front[m, 0].all() or data.visibility[rows][m, n] <= 0:
                continue
            colour = _colour(label)
            for a, b in EDGES:
                ax.plot(*pix[m, 0, [a, b]].T.numpy(), color=colour, lw=0.8)
            top = pix[m, 0, 4:].numpy()
            ax.text(
                top[:, 0].mean(), top[:, 1].min() - 1, str(ident), color=colour, fontsize=5, ha="center", clip_on=True
            )
    w, h = data.image_wh[n]
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_title(name, fontsize=7)
    ax.axis("off")


def _draw_bev(ax, data: SceneData, t: int, classes: tuple[str, ...], names: list[str]) -> None:
    rw, rh = data.room_size
    if rw > 0 and rh > 0:  # real recordings do not know their room
        ax.add_patch(Rectangle((-rw / 2, -rh / 2), rw, rh, fill=False, color="k", lw=1.5))
    for box, kind in zip(data.distractor_boxes, data.distractor_kinds, strict=True):
        footprint = geometry.bev_corners(torch.from_numpy(box)).numpy()
        ax.add_patch(Polygon(footprint, closed=True, color="0.6", alpha=0.6))
        ax.text(*box[:2], DISTRACTOR_KINDS[kind], fontsize=5, ha="center", va="center", color="0.25")
    rows = data.frame_slice(t)
    for box, label, ident in zip(data.boxes[rows], data.labels[rows], data.ids[rows], strict=True):
        colour = _colour(label)
        ax.add_patch(Polygon(geometry.bev_corners(torch.from_numpy(box)).numpy(), closed=True, color=colour))
        ax.arrow(box[0], box[1], 0.6 * math.cos(box[6]), 0.6 * math.sin(box[6]), color=colour, width=0.02)
        ax.text(box[0], box[1] + 0.4, str(ident), fontsize=6, color=colour, ha="center")
    origins = []
    for n, ext in enumerate(data.extrinsics):
        origin = -ext[:3, :3].T @ ext[:3, 3]
        origins.append(origin[:2])
        k = data.intrinsics[n]
        w = data.image_wh[n, 0]
        # Frustum edges through the left and right image borders, drawn 5 m long on the floor plane.
        for u in (0.0, w):
            ray = ext[:3, :3].T @ np.array([(u - k[0, 2]) / k[0, 0], 0.0, 1.0])
            ray2 = ray[:2] / (np.linalg.norm(ray[:2]) + 1e-9)
            ax.plot([origin[0], origin[0] + 5 * ray2[0]], [origin[1], origin[1] + 5 * ray2[1]], "k--", lw=0.5)
        ax.plot(*origin[:2], "k^", ms=5)
        ax.text(origin[0], origin[1] - 0.6, names[n], fontsize=6, ha="center")
    handles = [Rectangle((0, 0), 1, 1, color=_colour(k)) for k in range(len(classes))]
    ax.legend(handles, classes, fontsize=6, loc="upper right")
    # The view spans the room, the cameras and every box of the scene.
    points = np.concatenate([[[-rw / 2, -rh / 2], [rw / 2, rh / 2]], np.asarray(origins), data.boxes[:, :2]])
    low, high = points.min(axis=0) - 1, points.max(axis=0) + 1
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    ax.set_title(f"{data.name} frame {t}: bird's-eye view (x right, y up)", fontsize=8)


def preview(data: SceneData, frame: int, out: str | Path, classes: tuple[str, ...] = CLASSES) -> Path:
    """Write ``out`` (PNG): a grid of camera images with ground truth, and the bird's-eye view."""
    if not 0 <= frame < data.num_frames:
        raise ValueError(f"--frame {frame} out of range: scene {data.name} has frames 0..{data.num_frames - 1}")
    n_cam = data.images.shape[1]
    names = [str(c) for c in data.cameras] if data.cameras is not None else [f"camera {n}" for n in range(n_cam)]
    cols = min(n_cam, 4)
    rows = math.ceil(n_cam / cols)
    fig = plt.figure(figsize=(3.2 * cols, 1.9 * rows + 5.5), dpi=150)
    grid = fig.add_gridspec(rows + 1, cols, height_ratios=[1] * rows + [2.8])
    for n in range(n_cam):
        _draw_camera(fig.add_subplot(grid[n // cols, n % cols]), data, frame, n, names[n])
    _draw_bev(fig.add_subplot(grid[rows, :]), data, frame, tuple(classes), names)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
