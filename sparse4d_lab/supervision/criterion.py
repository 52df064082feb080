"""Sparse4D's training objective with a pluggable classification scheme: match every decoder layer's queries to
the ground truth, then classification (the arm), box, centerness and yawness losses, for the normal and the
denoising queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import geometry
from ..model.outputs import Denoising, LayerOutput, ModelOutput
from .losses import anchor_targets, box_loss, centerness_loss, yawness_loss
from .matching import Assignment, assign_targets, empty_assignment, hungarian, match_cost
from .paq import PatternQueries, quality_aware_assign
from .schemes import ClassificationScheme


@dataclass
class LossResult:
    total: Tensor
    terms: dict[str, Tensor]  # every weighted term, e.g. "cls_0", "box_5", "dn_cls_5", "pattern_diversity"
    assignment: Assignment  # of the last layer's normal queries: who was matched, for the analysis


class Sparse4DCriterion:
    """Hungarian matching per layer (Sparse4D: 2 x class cost + 0.25 x weighted L1), or PaQ's quality-aware
    one-to-many assignment on the intermediate layers when ``quality_assign`` is on."""

    def __init__(
        self,
        scheme: ClassificationScheme,
        cls_cost_weight: float = 2.0,
        box_cost_weight: float = 0.25,
        box_loss_weight: float = 0.25,
        quality_loss_weight: float = 1.0,
        layer_weights: Sequence[float] | None = None,
        allow_reverse: Sequence[int] = (),
        quality_assign: bool = False,
        quality_lambda: float = 0.4,
        quality_topk: int = 4,
        query_generator: PatternQueries | None = None,
    ):
        self.scheme = scheme
        self.cls_cost_weight, self.box_cost_weight = cls_cost_weight, box_cost_weight
        self.box_loss_weight, self.quality_loss_weight = box_loss_weight, quality_loss_weight
        self.layer_weights = list(layer_weights) if layer_weights is not None else None
        self.allow_reverse = tuple(allow_reverse)
        self.quality_assign, self.quality_lambda, self.quality_topk = quality_assign, quality_lambda, quality_topk
        self.query_generator = query_generator  # owned by the model; the criterion only adds its diversity loss

    @torch.no_grad()
    def assign(
        self, layer: LayerOutput, gt_boxes: list[Tensor], gt_labels: list[Tensor], one_to_many: bool
    ) -> Assignment:
        batch, queries = layer.cls.shape[:2]
        result = empty_assignment(batch, queries, self.scheme.num_classes, layer.cls.device)
        for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
            if len(labels) == 0 or queries == 0:
                continue
            logits, anchor = layer.cls[b].float(), layer.anchor[b].float()
            cost = match_cost(
                self.scheme.match_cost(logits, labels), anchor, boxes, self.cls_cost_weight, self.box_cost_weight
            )
            query, gt = hungarian(cost)
            if one_to_many:
                per_gt = torch.full((len(labels),), -1, dtype=torch.long, device=cost.device)
                per_gt[gt] = query
                iou = geometry.iou_3d(geometry.anchor_to_box(anchor), boxes.to(anchor))
                confidence = self.scheme.scores(logits)[:, labels]
                query, gt = quality_aware_assign(iou, confidence, per_gt, self.quality_lambda, self.quality_topk)
                matched = query >= 0
                query, gt = query[matched], gt[matched]
            assign_targets(result, b, query, gt, boxes, labels)
        return result

    @staticmethod
    def denoising_assignment(
        dn: Denoising, gt_boxes: list[Tensor], gt_labels: list[Tensor], background: int
    ) -> Assignment:
        """Positive copies learn their GT; negative copies are denoising negatives (label -1); padding is ignored."""
        batch, queries = dn.gt_index.shape
        result = empty_assignment(batch, queries, background, dn.gt_index.device)
        result.valid = dn.valid.clone()
        result.labels[dn.valid & ~dn.positive] = -1
        for b in range(batch):
            query = torch.nonzero(dn.valid[b] & dn.positive[b]).squeeze(-1)
            assign_targets(result, b, query, dn.gt_index[b, query], gt_boxes[b], gt_labels[b])
        return result

    def layer_losses(self, layer: LayerOutput, target: Assignment) -> dict[str, Tensor]:
        valid, positive = target.valid, target.positive & target.valid
        num_pos = float(positive.sum())
        pred = layer.anchor[positive]
        boxes = target.box_target[positive]
        iou = None
        if self.scheme.needs_iou:
            iou = torch.zeros(positive.shape, device=pred.device)
            with torch.no_grad():
                iou[positive] = geometry.iou_3d(geometry.anchor_to_box(pred.float()), boxes.float(), aligned=True)
            iou = iou[valid]
        losses = {"cls": self.scheme.loss(layer.cls[valid], target.labels[valid], num_pos, iou)}
        anchors = anchor_targets(pred, boxes, target.labels[positive], self.allow_reverse)
        losses["box"] = self.box_loss_weight * box_loss(pred, anchors, num_pos)
        if layer.quality is not None:
            quality = layer.quality[positive]
            losses["cns"] = self.quality_loss_weight * centerness_loss(quality[:, 0], pred, anchors, num_pos)
            losses["yns"] = self.quality_loss_weight * yawness_loss(quality[:, 1], pred, anchors, num_pos)
        return losses

    def __call__(self, output: ModelOutput, gt_boxes: list[Tensor], gt_labels: list[Tensor]) -> LossResult:
        terms: dict[str, Tensor] = {}
        last = len(output.layers) - 1
        weights = self.layer_weights or [1.0] * len(output.layers)
        if len(weights) != len(output.layers):
            raise ValueError(f"layer_weights has {len(weights)} entries for {len(output.layers)} decoder layers")
        for i, layer in enumerate(output.layers):
            target = self.assign(layer, gt_boxes, gt_labels, one_to_many=self.quality_assign and i < last)
            terms.update({f"{k}_{i}": v * weights[i] for k, v in self.layer_losses(layer, target).items()})
            if i == last:
                final = target
        if output.denoising is not None:
            target = self.denoising_assignment(output.denoising, gt_boxes, gt_labels, self.scheme.num_classes)
            for i, layer in enumerate(output.denoising.layers):
                terms.update({f"dn_{k}_{i}": v * weights[i] for k, v in self.layer_losses(layer, target).items()})
        if self.query_generator is not None:
            terms["pattern_diversity"] = self.query_generator.diversity_loss()
        terms.update(output.aux_losses)
        return LossResult(torch.stack(list(terms.values())).sum(), terms, final)
