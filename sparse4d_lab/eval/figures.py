"""Figures of one evaluation pass: the scores of matched vs unmatched queries, and a bird's-eye view of a frame."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from matplotlib.patches import Polygon

from .. import geometry


def score_histogram(frames: Sequence[dict[str, Any]], path: Path) -> Path:
    """Distribution of every query's best class score, split by whether the matcher gave it a GT.

    Under a loss that gives unmatched queries no negative signal, the unmatched mass drifts to high scores.
    """
    scores = np.concatenate([f["query_scores"] for f in frames])
    matched = np.concatenate([f["matched"] for f in frames]).astype(bool)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    bins = np.linspace(0, 1, 41)
    for name, sel, colour in (("unmatched", ~matched, "#d62728"), ("matched", matched, "#1f77b4")):
        if sel.any():
            sns.histplot(scores[sel], bins=bins, stat="density", ax=ax, color=colour, alpha=0.5, label=name)
    ax.set_xlabel("query score")
    ax.set_title(f"{matched.sum()} matched / {(~matched).sum()} unmatched queries", fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def bev_frame(frame: dict[str, Any], classes: Sequence[str], path: Path) -> Path:
    """Ground truth (outlines), distractors (grey) and detections coloured by score, with their track ids."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    if frame["distractors"] is not None:
        for box in frame["distractors"]:
            ax.add_patch(Polygon(geometry.bev_corners(torch.from_numpy(box)).numpy(), color="0.8"))
    for box, label in zip(frame["gt_boxes"], frame["gt_labels"], strict=True):
        corners = geometry.bev_corners(torch.from_numpy(box)).numpy()
        ax.add_patch(Polygon(corners, fill=False, edgecolor="k", lw=1.2))
        ax.text(box[0], box[1] - 0.5, classes[int(label)][:6], fontsize=5, ha="center")
    cmap = plt.get_cmap("viridis")
    for box, score, ident in zip(frame["boxes"], frame["scores"], frame["ids"], strict=True):
        corners = geometry.bev_corners(torch.from_numpy(box.astype(np.float64))).numpy()
        ax.add_patch(Polygon(corners, color=cmap(float(score)), alpha=0.6))
        if ident >= 0 and score >= 0.3:
            ax.text(box[0], box[1] + 0.4, str(int(ident)), fontsize=5, ha="center")
    points = np.concatenate([frame["gt_boxes"][:, :2], frame["boxes"][:, :2], np.zeros((1, 2))])
    lo, hi = points.min(0) - 2, points.max(0) + 2
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal")
    fig.colorbar(plt.cm.ScalarMappable(cmap=cmap), ax=ax, label="detection score")
    ax.set_title(f"{frame['sample']}: GT outlined, detections filled", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
