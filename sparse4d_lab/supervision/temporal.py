"""Temporal target assignment (TAO's ``use_temporal_align``): a query that tracked a ground-truth instance keeps it.

In the first frame of a sequence, and on the layers before the instance bank inserts last frame's instances, every
query goes through the Hungarian match. On the layers after it, the first ``T`` query slots hold the instances
cached from the previous frame; one that was matched there to GT instance ``k`` keeps ``k`` while its matching cost
stays strictly below ``threshold`` (TAO's ``gt_assign_threshold``, 0.5), and only the other queries and GTs are
matched by Hungarian. Each layer's assignment is the one the next layer keeps from (TAO chains them), and the last
layer's, restricted to the instances the bank caches, is what the next frame keeps.

Upstream Sparse4D has no such rule: it matches every layer of every frame afresh.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..model.temporal_denoising import instance_index
from .matching import COST_FILL, hungarian


def keep_then_match(cost: Tensor, carried_gt: Tensor, threshold: float) -> tuple[Tensor, Tensor]:
    """``cost [Q, M]``; ``carried_gt [Q]`` the GT index each query held (-1 none). Pairs below ``threshold`` stay,
    the rest of the rows and columns are matched by Hungarian. Returns (query, gt) index pairs."""
    query = torch.nonzero(carried_gt >= 0).squeeze(-1)
    gt = carried_gt[query]
    keep = cost[query, gt] < threshold
    query, gt = query[keep], gt[keep]
    free = cost.clone()
    free[query] = COST_FILL
    free[:, gt] = COST_FILL
    rows, cols = hungarian(free)
    fresh = free[rows, cols] < COST_FILL
    return torch.cat([query, rows[fresh]]), torch.cat([gt, cols[fresh]])


class TemporalAssignment:
    """The GT instance ids that the cached queries of each batch slot were assigned in its previous frame."""

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self.previous: Tensor | None = None  # [B, T] GT instance id of each cached query, -1 none

    def carried(self, b: int, temporal: Tensor, gt_ids: Tensor, queries: int) -> Tensor | None:
        """``[Q]`` GT index each query of slot ``b`` held in the previous frame (-1 none), or None where the slot
        has no memory (first frame of a sequence): then it is matched by Hungarian alone."""
        if self.previous is None or b >= len(self.previous) or not bool(temporal.any()):
            return None
        ids = self.previous[b]
        held = torch.full((queries,), -1, dtype=torch.long, device=gt_ids.device)
        held[: len(ids)] = instance_index(ids, gt_ids).to(held.device)  # -1 where the instance has left
        return held

    def remember(self, gt_index: Tensor, cached_query: Tensor, gt_ids: list[Tensor]) -> None:
        """After the last layer: keep the GT instance id of every query the instance bank caches."""
        previous = torch.full(cached_query.shape, -1, dtype=torch.long, device=cached_query.device)
        for b, ids in enumerate(gt_ids):
            index = gt_index[b].gather(0, cached_query[b])
            matched = index >= 0
            previous[b, matched] = ids.to(previous.device)[index[matched]]
        self.previous = previous
