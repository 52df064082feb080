"""Sparse4D's training objective with a pluggable classification scheme: match every decoder layer's queries to
the ground truth, then classification (the arm), box, centerness and yawness losses, for the normal and the
denoising queries.

The rules around the classification loss are switches, set together by a semantics profile
(``experiments/conf/semantics/``): TAO 6.25's Sparse4D port and upstream Sparse4D v3 differ in some of them, and
the arms must be compared inside one of the two, not a blend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import geometry
from ..model.outputs import Denoising, LayerOutput, ModelOutput
from ..model.pattern_queries import PatternQueries
from .losses import anchor_targets, box_loss, centerness_loss, yawness_loss
from .matching import Assignment, assign_targets, empty_assignment, hungarian, match_cost
from .paq import quality_aware_assign
from .schemes import ClassificationScheme
from .temporal import TemporalAssignment, keep_then_match

DN_AVG_FACTORS = ("valid", "positive")
YAWNESS_REDUCTIONS = ("avg_factor", "mean")


@dataclass
class LossResult:
    total: Tensor
    terms: dict[str, Tensor]  # every weighted term, e.g. "cls_0", "box_5", "dn_cls_5", "pattern_diversity"
    assignment: Assignment  # of the last layer's normal queries: who was matched, for the analysis


class Sparse4DCriterion:
    """Hungarian matching per layer (Sparse4D: 2 x class cost + 0.25 x weighted L1), or PaQ's quality-aware
    one-to-many assignment on the intermediate layers when ``quality_assign`` is on.

    Rules (TAO 6.25 / upstream Sparse4D v3, defaults upstream):

    - ``cls_threshold_to_reg`` (0.05 / 0.05): a positive whose best class probability is not above it gets no box,
      centerness or yawness loss; the divisor is still every positive. 0 disables it. Normal queries only.
    - ``dn_avg_factor`` ("valid" / "valid"): the denoising classification and box losses are divided by the number
      of valid denoising queries (positives and negatives), or by the positives alone ("positive").
    - ``dn_quality_loss`` (False / False): centerness and yawness losses on denoising positives.
    - ``detach_centerness_target`` (False / False): the target ``exp(-|centre error|)`` is a function of the
      predicted centre in both, so the centerness loss also moves box centres unless detached.
    - ``yawness_reduction`` ("mean" / "avg_factor"): TAO averages the yawness loss over the regressed positives,
      upstream divides its sum by the positive count.
    - ``temporal_assign`` (True / False) with ``temporal_assign_threshold`` (0.5): TAO's ``use_temporal_align``
      (``temporal.py``) on the layers from the model's first temporal layer on. PaQ's arms (``quality_assign``) keep
      their one-to-many assignment instead: the two rules decide the same thing differently.
    """

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
        cls_threshold_to_reg: float = 0.05,
        dn_avg_factor: str = "valid",
        dn_quality_loss: bool = False,
        detach_centerness_target: bool = False,
        yawness_reduction: str = "avg_factor",
        temporal_assign: bool = False,
        temporal_assign_threshold: float = 0.5,
    ):
        if dn_avg_factor not in DN_AVG_FACTORS:
            raise ValueError(f"criterion.dn_avg_factor: must be one of {DN_AVG_FACTORS}, got {dn_avg_factor!r}")
        if yawness_reduction not in YAWNESS_REDUCTIONS:
            raise ValueError(
                f"criterion.yawness_reduction: must be one of {YAWNESS_REDUCTIONS}, got {yawness_reduction!r}"
            )
        if not 0 <= cls_threshold_to_reg < 1:
            raise ValueError(
                f"criterion.cls_threshold_to_reg: must lie in [0, 1) (0 = off), got {cls_threshold_to_reg}"
            )
        self.scheme = scheme
        self.cls_cost_weight, self.box_cost_weight = cls_cost_weight, box_cost_weight
        self.box_loss_weight, self.quality_loss_weight = box_loss_weight, quality_loss_weight
        self.layer_weights = list(layer_weights) if layer_weights is not None else None
        self.allow_reverse = tuple(allow_reverse)
        self.quality_assign, self.quality_lambda, self.quality_topk = quality_assign, quality_lambda, quality_topk
        self.query_generator = query_generator  # owned by the model; the criterion only adds its diversity loss
        self.cls_threshold_to_reg, self.dn_avg_factor = cls_threshold_to_reg, dn_avg_factor
        self.dn_quality_loss, self.detach_centerness_target = dn_quality_loss, detach_centerness_target
        self.yawness_reduction = yawness_reduction
        self.temporal = TemporalAssignment(temporal_assign_threshold) if temporal_assign else None

    @torch.no_grad()
    def assign(
        self,
        layer: LayerOutput,
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        one_to_many: bool,
        carried: list[Tensor | None] | None = None,
    ) -> Assignment:
        """Targets of one layer's queries. ``carried[b] [Q]``: the GT index each query of slot ``b`` held from the
        previous frame or layer (temporal assignment), None for the Hungarian match alone."""
        batch, queries = layer.cls.shape[:2]
        result = empty_assignment(batch, queries, self.scheme.num_classes, layer.cls.device)
        for b, (boxes, labels) in enumerate(zip(gt_boxes, gt_labels, strict=True)):
            if len(labels) == 0 or queries == 0:
                continue
            logits, anchor = layer.cls[b].float(), layer.anchor[b].float()
            cost = match_cost(
                self.scheme.match_cost(logits, labels), anchor, boxes, self.cls_cost_weight, self.box_cost_weight
            )
            held = carried[b] if carried is not None else None
            if held is not None and self.temporal is not None:
                query, gt = keep_then_match(cost, held, self.temporal.threshold)
            else:
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
        dn: Denoising, gt_boxes: list[Tensor], gt_labels: list[Tensor], background: int, carried: bool = False
    ) -> Assignment:
        """Positive copies learn their GT; negative copies are denoising negatives (label -1); padding is ignored.
        ``carried``: the targets of the layers after temporal denoising groups replaced some copies."""
        gt_index, positive, valid = (
            (dn.carried_gt_index, dn.carried_positive, dn.carried_valid)
            if carried
            else (dn.gt_index, dn.positive, dn.valid)
        )
        batch, queries = gt_index.shape
        result = empty_assignment(batch, queries, background, gt_index.device)
        result.valid = valid.clone()
        result.labels[valid & ~positive] = -1
        for b in range(batch):
            query = torch.nonzero(valid[b] & positive[b]).squeeze(-1)
            assign_targets(result, b, query, gt_index[b, query], gt_boxes[b], gt_labels[b])
        return result

    def layer_losses(self, layer: LayerOutput, target: Assignment, denoising: bool = False) -> dict[str, Tensor]:
        valid, positive = target.valid, target.positive & target.valid
        num_pos = float(positive.sum())
        avg_factor = float(valid.sum()) if denoising and self.dn_avg_factor == "valid" else num_pos
        iou = None
        if self.scheme.needs_iou:
            iou = torch.zeros(positive.shape, device=layer.anchor.device)
            with torch.no_grad():
                iou[positive] = geometry.iou_3d(
                    geometry.anchor_to_box(layer.anchor[positive].float()),
                    target.box_target[positive].float(),
                    aligned=True,
                )
            iou = iou[valid]
        losses = {"cls": self.scheme.loss(layer.cls[valid], target.labels[valid], avg_factor, iou)}
        regress = positive
        if self.cls_threshold_to_reg > 0 and not denoising:
            best = self.scheme.scores(layer.cls.detach().float()).max(dim=-1).values
            regress = positive & (best > self.cls_threshold_to_reg)
        pred = layer.anchor[regress]
        anchors = anchor_targets(pred, target.box_target[regress], target.labels[regress], self.allow_reverse)
        losses["box"] = self.box_loss_weight * box_loss(pred, anchors, avg_factor)
        if layer.quality is not None and (self.dn_quality_loss or not denoising):
            quality = layer.quality[regress]
            yawness_factor = float(len(pred)) if self.yawness_reduction == "mean" else avg_factor
            losses["cns"] = self.quality_loss_weight * centerness_loss(
                quality[:, 0], pred, anchors, avg_factor, self.detach_centerness_target
            )
            losses["yns"] = self.quality_loss_weight * yawness_loss(quality[:, 1], pred, anchors, yawness_factor)
        return losses

    def __call__(
        self,
        output: ModelOutput,
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        gt_ids: list[Tensor] | None = None,
    ) -> LossResult:
        """The loss of one training batch. ``gt_ids`` (GT instance ids per slot) is needed by the temporal
        assignment, which also remembers this frame's matches for the slot's next frame."""
        terms: dict[str, Tensor] = {}
        last = len(output.layers) - 1
        weights = self.layer_weights or [1.0] * len(output.layers)
        if len(weights) != len(output.layers):
            raise ValueError(f"layer_weights has {len(weights)} entries for {len(output.layers)} decoder layers")
        temporal = self.temporal if self.temporal is not None and not self.quality_assign else None
        if temporal is not None and gt_ids is None:
            raise ValueError("criterion.temporal_assign needs the GT instance ids (batch['gt_ids'])")
        carried = None
        for i, layer in enumerate(output.layers):
            if temporal is not None and gt_ids is not None and i == output.first_temporal_layer:
                queries = layer.cls.shape[1]
                carried = [temporal.carried(b, output.temporal[b], ids, queries) for b, ids in enumerate(gt_ids)]
            target = self.assign(layer, gt_boxes, gt_labels, self.quality_assign and i < last, carried)
            if carried is not None:  # the next layer keeps what this one assigned
                carried = [None if c is None else target.gt_index[b] for b, c in enumerate(carried)]
            terms.update({f"{k}_{i}": v * weights[i] for k, v in self.layer_losses(layer, target).items()})
            if i == last:
                final = target
        if temporal is not None and gt_ids is not None and output.cached_query is not None:
            temporal.remember(final.gt_index, output.cached_query, gt_ids)
        dn = output.denoising
        if dn is not None:
            fresh = self.denoising_assignment(dn, gt_boxes, gt_labels, self.scheme.num_classes)
            carried = None
            if dn.carried_gt_index is not None:
                carried = self.denoising_assignment(dn, gt_boxes, gt_labels, self.scheme.num_classes, carried=True)
            for i, layer in enumerate(dn.layers):
                target = carried if carried is not None and i >= output.first_temporal_layer else fresh
                losses = self.layer_losses(layer, target, denoising=True)
                terms.update({f"dn_{k}_{i}": v * weights[i] for k, v in losses.items()})
        if self.query_generator is not None:
            terms["pattern_diversity"] = self.query_generator.diversity_loss()
        terms.update(output.aux_losses)
        return LossResult(torch.stack(list(terms.values())).sum(), terms, final)
