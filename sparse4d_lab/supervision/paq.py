"""PaQ-DETR (arXiv 2603.06917) for Sparse4D, its supervision half: quality-aware one-to-many assignment. The other
half, pattern-sharing dynamic queries, is a part of the model (``model/pattern_queries.py``); each can be switched on
alone, so the paper's ablation can be run.

From the paper: quality ``s = IoU - lambda * confidence`` with ``lambda = 0.4``, top-k candidates per GT, a dynamic
number of positives. This project's 3D adaptation: IoU is the rotated 3D IoU; the positive count is
``max(ceil(sum of the top-k s), 1)``; only queries whose box overlaps the GT (IoU > 0) can be candidates, and a GT
that no query overlaps keeps its Hungarian match (tiny 3D boxes rarely overlap early in training, when the 2D paper's
candidates always do).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def positive_counts(topk_quality: Tensor) -> Tensor:
    """``[M, k]`` top-k quality per GT (invalid entries -inf) -> ``[M]`` positives: max(ceil(sum), 1), at most the
    number of valid candidates."""
    valid = torch.isfinite(topk_quality)
    total = torch.where(valid, topk_quality, torch.zeros_like(topk_quality)).sum(-1)
    return torch.minimum(total.ceil().clamp_min(1).long(), valid.sum(-1).clamp_min(1))


def quality_aware_assign(
    iou: Tensor, confidence: Tensor, hungarian_query: Tensor, lam: float = 0.4, topk: int = 4
) -> tuple[Tensor, Tensor]:
    """One-to-many assignment for one frame.

    ``iou``, ``confidence``: ``[Q, M]`` (confidence = predicted score of the GT's class); ``hungarian_query [M]``:
    each GT's one-to-one match, its fallback when no query overlaps it. Returns (query indices, GT indices); a query
    chosen by several GTs goes to the one where its quality is highest.
    """
    q, m = iou.shape
    if m == 0 or q == 0:
        empty = torch.zeros(0, dtype=torch.long, device=iou.device)
        return empty, empty
    quality = iou - lam * confidence
    candidate_quality = torch.where(iou > 0, quality, torch.full_like(quality, -math.inf))
    k = min(topk, q)
    top_quality, top_query = candidate_quality.T.topk(k, dim=-1)  # [M, k]
    counts = positive_counts(top_quality)
    chosen = (torch.arange(k, device=iou.device) < counts.unsqueeze(-1)) & torch.isfinite(top_quality)
    gt_idx = torch.arange(m, device=iou.device).unsqueeze(-1).expand(m, k)[chosen]
    query_idx = top_query[chosen]
    picked_quality = top_quality[chosen]
    no_overlap = ~torch.isfinite(top_quality[:, 0])
    if no_overlap.any():  # fall back to the Hungarian match for GTs that no query overlaps
        fallback_gt = torch.nonzero(no_overlap).squeeze(-1)
        gt_idx = torch.cat([gt_idx, fallback_gt])
        query_idx = torch.cat([query_idx, hungarian_query[fallback_gt]])
        picked_quality = torch.cat([picked_quality, quality[hungarian_query[fallback_gt], fallback_gt]])
    # Resolve queries claimed twice: keep the claim with the highest quality.
    best = torch.full((q,), -math.inf, device=iou.device).scatter_reduce(0, query_idx, picked_quality, "amax")
    keep = picked_quality >= best[query_idx]
    query_idx, gt_idx = query_idx[keep], gt_idx[keep]
    _, first = unique_first(query_idx)
    return query_idx[first], gt_idx[first]


def unique_first(values: Tensor) -> tuple[Tensor, Tensor]:
    """Unique values and the index of each one's first occurrence (ties in quality keep one claim)."""
    unique, inverse = torch.unique(values, return_inverse=True)
    positions = torch.arange(len(values), device=values.device)
    first = torch.full((len(unique),), len(values), device=values.device).scatter_reduce(0, inverse, positions, "amin")
    return unique, first
