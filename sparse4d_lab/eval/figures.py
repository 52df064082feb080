"""Figures of one evaluation pass: the scores of matched vs unmatched queries, and a bird's-eye view of a frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import PolyCollection

from .. import geometry


def draw_score_histogram(ax: plt.Axes, scores: np.ndarray, matched: np.ndarray) -> None:
    """Density of the query scores of unmatched (red) and matched (blue) queries on one axis."""
    scores, matched = scores.astype(float), matched.astype(bool)
    bins = np.linspace(0, 1, 41)
    for name, sel, colour in (("unmatched", ~matched, "#d62728"), ("matched", matched, "#1f77b4")):
        if sel.any():  # one filled outline per group: quicker to draw and save than seaborn's bar per bin
            ax.hist(scores[sel], bins=bins, density=True, histtype="stepfilled", color=colour, alpha=0.5, label=name)
    ax.set_xlabel("query score")
    ax.legend(fontsize="small")


def score_histogram(frames: Sequence[dict[str, Any]], path: Path) -> Path:
    """Distribution of every query's best class score, split by whether the matcher gave it a GT.

    Under a loss that gives unmatched queries no negative signal, the unmatched mass drifts to high scores.
    """
    scores = np.concatenate([f["query_scores"] for f in frames])
    matched = np.concatenate([f["matched"] for f in frames]).astype(bool)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    draw_score_histogram(ax, scores, matched)
    ax.set_title(f"{matched.sum()} matched / {(~matched).sum()} unmatched queries", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


BEV_CMAP = "viridis"  # detection score colours


def _footprints(boxes: np.ndarray) -> np.ndarray:
    """``[N, 10]`` boxes -> ``[N, 4, 2]`` floor-plane corners, all at once."""
    return geometry.bev_corners(torch.from_numpy(np.asarray(boxes, np.float64).reshape(-1, 10))).numpy()


def draw_bev(ax: plt.Axes, frame: dict[str, Any], classes: Sequence[str]) -> None:
    """Ground truth (outlines), distractors (grey) and detections coloured by score (``BEV_CMAP``) with ids.

    Boxes are drawn as one collection per kind: a frame may hold hundreds of detections.
    """
    if frame["distractors"] is not None:
        ax.add_collection(PolyCollection(_footprints(frame["distractors"]), facecolors="0.8"))
    ax.add_collection(PolyCollection(_footprints(frame["gt_boxes"]), facecolors="none", edgecolors="k", lw=1.2))
    for box, label in zip(frame["gt_boxes"], frame["gt_labels"], strict=True):
        ax.text(box[0], box[1] - 0.5, classes[int(label)][:6], fontsize=5, ha="center")
    colours = plt.get_cmap(BEV_CMAP)(np.asarray(frame["scores"], float))
    ax.add_collection(PolyCollection(_footprints(frame["boxes"]), facecolors=colours, alpha=0.6))
    for box, score, ident in zip(frame["boxes"], frame["scores"], frame["ids"], strict=True):
        if ident >= 0 and score >= 0.3:
            ax.text(box[0], box[1] + 0.4, str(int(ident)), fontsize=5, ha="center")
    points = np.concatenate([frame["gt_boxes"][:, :2], frame["boxes"][:, :2], np.zeros((1, 2))])
    lo, hi = points.min(0) - 2, points.max(0) + 2
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")


def bev_frame(frame: dict[str, Any], classes: Sequence[str], path: Path) -> Path:
    """Ground truth (outlines), distractors (grey) and detections coloured by score, with their track ids."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    draw_bev(ax, frame, classes)
    fig.colorbar(plt.cm.ScalarMappable(cmap=BEV_CMAP), ax=ax, label="detection score")
    ax.set_title(f"{frame['sample']}: GT outlined, detections filled", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
