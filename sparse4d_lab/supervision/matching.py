"""Per-frame query-to-GT assignment: Sparse4D's Hungarian matching and the per-query targets it yields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .. import geometry

# Sparse4D's matching weights on the anchor: position and log-size only (TAO card: sampler.reg_weights).
MATCH_REG_WEIGHTS = (2.0, 2.0, 2.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0)
COST_FILL = 1e8  # what a non-finite cost becomes: never preferred, never crashing the solver


@dataclass
class Assignment:
    """Targets of one set of queries of a batch. ``labels``: class, ``C`` background, negative denoising negative."""

    labels: Tensor  # [B, Q] long
    gt_index: Tensor  # [B, Q] long, -1 where the query has no GT
    box_target: Tensor  # [B, Q, 10] GT boxes (zeros where none)
    valid: Tensor  # [B, Q] bool: the query takes part in the loss at all (False only for padding)

    @property
    def positive(self) -> Tensor:
        return self.gt_index >= 0


def weighted_l1_cost(pred_anchor: Tensor, gt_anchor: Tensor, weights: tuple[float, ...] = MATCH_REG_WEIGHTS) -> Tensor:
    """``[Q, 11] x [M, 11] -> [Q, M]``: sum of weighted absolute anchor differences."""
    w = pred_anchor.new_tensor(weights)
    return ((pred_anchor.unsqueeze(1) - gt_anchor.unsqueeze(0)).abs() * w).sum(-1)


def hungarian(cost: Tensor) -> tuple[Tensor, Tensor]:
    """Minimum-cost one-to-one matching of rows (queries) to columns (GTs); non-finite costs never crash it."""
    matrix = np.nan_to_num(cost.detach().cpu().double().numpy(), nan=COST_FILL, posinf=COST_FILL, neginf=-COST_FILL)
    rows, cols = linear_sum_assignment(matrix)
    return torch.as_tensor(rows, device=cost.device), torch.as_tensor(cols, device=cost.device)


def empty_assignment(batch: int, queries: int, background: int, device: torch.device) -> Assignment:
    """Every query background, no GT."""
    return Assignment(
        labels=torch.full((batch, queries), background, dtype=torch.long, device=device),
        gt_index=torch.full((batch, queries), -1, dtype=torch.long, device=device),
        box_target=torch.zeros(batch, queries, 10, device=device),
        valid=torch.ones(batch, queries, dtype=torch.bool, device=device),
    )


def assign_targets(
    assignment: Assignment, b: int, query: Tensor, gt: Tensor, gt_boxes: Tensor, gt_labels: Tensor
) -> None:
    """Write slot ``b``'s matches (``query[i]`` takes GT ``gt[i]``) into ``assignment`` in place."""
    assignment.gt_index[b, query] = gt
    assignment.labels[b, query] = gt_labels[gt]
    assignment.box_target[b, query] = gt_boxes[gt].to(assignment.box_target)


def match_cost(cls_cost: Tensor, pred_anchor: Tensor, gt_boxes: Tensor, cls_weight: float, box_weight: float) -> Tensor:
    """Sparse4D's cost: ``cls_weight`` x scheme cost + ``box_weight`` x weighted L1 on position and size."""
    gt_anchor = geometry.box_to_anchor(gt_boxes.to(pred_anchor))
    return cls_weight * cls_cost + box_weight * weighted_l1_cost(pred_anchor, gt_anchor)
