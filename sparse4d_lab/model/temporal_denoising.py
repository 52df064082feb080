"""Temporal denoising groups (Sparse4D v3, kept as is by TAO): some denoising groups live on into the next frame.

After a training frame, ``num_temp_dn_groups`` of the denoising groups, chosen at random, are cached with their
final features and anchors (detached) and the GT instance each copy was made from. At the next frame of the same
sequence the instance bank moves their anchors as it moves the cached instances, and after the single-frame layers
they replace the first groups of that frame's denoising queries. A carried positive must then learn the current box
of its instance; one whose instance has left, and every carried negative, must learn background. Each group is cut
or padded (with invalid copies) to the current group size, as upstream does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .denoising import DenoisingQueries


@dataclass
class CarriedDenoising:
    """Denoising groups cached from a slot's previous frame: ``[B, G_t, K, ...]``."""

    feature: Tensor  # [B, G_t, K, D]
    anchor: Tensor  # [B, G_t, K, 11]
    positive: Tensor  # [B, G_t, K] bool
    valid: Tensor  # [B, G_t, K] bool
    instance: Tensor  # [B, G_t, K] long: GT instance id the copy was made from, -1 for padding


def _groups(x: Tensor, num_groups: int) -> Tensor:
    """``[B, G * K, ...]`` -> ``[B, G, K, ...]``."""
    return x.unflatten(1, (num_groups, x.shape[1] // num_groups))


def instance_index(ids: Tensor, gt_ids: Tensor) -> Tensor:
    """Index in ``gt_ids [M]`` of each instance id in ``ids [N]``; -1 where it is not there (left, or padding)."""
    if len(gt_ids) == 0:  # a frame without objects: every instance has left (argmax has nothing to reduce)
        return torch.full_like(ids, -1)
    present = (ids[:, None] == gt_ids.to(ids.device)[None, :]) & (ids[:, None] >= 0)
    return torch.where(present.any(-1), present.float().argmax(-1), -1)


def copy_instances(dn: DenoisingQueries, gt_ids: list[Tensor]) -> Tensor:
    """``[B, Q_dn]`` GT instance id each copy was made from (-1 for padding)."""
    instance = torch.full_like(dn.gt_index, -1)
    for b, ids in enumerate(gt_ids):
        valid = dn.valid[b]
        instance[b, valid] = ids.to(instance.device)[dn.gt_index[b, valid]]
    return instance


def carry_groups(
    dn: DenoisingQueries, instance: Tensor, feature: Tensor, anchor: Tensor, num_groups: int, num_carried: int
) -> CarriedDenoising:
    """``num_carried`` random groups of this frame's final denoising ``feature [B, Q_dn, D]`` and ``anchor``, with
    the targets they were trained on (``dn``) and their GT instances."""
    chosen = torch.randperm(num_groups, device=feature.device)[:num_carried].sort().values
    parts = (feature.detach(), anchor.detach(), dn.positive, dn.valid, instance)
    return CarriedDenoising(*(_groups(x, num_groups)[:, chosen] for x in parts))


def insert_carried(
    dn: DenoisingQueries,
    instance: Tensor,
    feature: Tensor,
    anchor: Tensor,
    carried: CarriedDenoising,
    has_memory: Tensor,
    gt_ids: list[Tensor],
    num_groups: int,
) -> tuple[Tensor, Tensor, DenoisingQueries, Tensor]:
    """Replace the first groups of ``feature``/``anchor [B, Q_dn, ...]`` by the carried ones in the slots that
    ``has_memory [B]``; return them, the denoising targets of the layers that see them, and each copy's instance."""
    G_t, K_old = carried.positive.shape[1:3]
    K = feature.shape[1] // num_groups
    take = min(K, K_old)

    def place(new: Tensor, old: Tensor, fill: float | bool) -> Tensor:
        grouped = _groups(new, num_groups).clone()
        head = torch.full_like(grouped[:, :G_t], fill)
        head[:, :, :take] = old[:, :, :take].to(head)
        keep = has_memory.view(-1, *([1] * (grouped.dim() - 1)))
        grouped[:, :G_t] = torch.where(keep, head, grouped[:, :G_t])
        return grouped.flatten(1, 2)

    feature = place(feature, carried.feature, 0.0)
    anchor = place(anchor, carried.anchor, 0.0)
    valid = place(dn.valid, carried.valid, False)
    is_carried = place(torch.zeros_like(dn.valid), torch.ones_like(carried.valid), True)
    instance = place(instance, carried.instance, -1)
    was_positive = place(dn.positive, carried.positive, False)
    gt_index, positive = dn.gt_index.clone(), dn.positive.clone()
    for b, ids in enumerate(gt_ids):
        old = is_carried[b]
        index = torch.where(was_positive[b, old], instance_index(instance[b, old], ids), -1)
        gt_index[b, old] = index
        positive[b, old] = index >= 0
    targets = DenoisingQueries(anchor=anchor, gt_index=gt_index, positive=positive & valid, valid=valid, group=dn.group)
    return feature, anchor, targets, instance
