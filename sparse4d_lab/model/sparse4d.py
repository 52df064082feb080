"""Sparse4D v3 (Lin et al. 2023, arXiv 2311.11722): sparse multi-camera 3D detection and tracking.

One forward pass handles one frame of every batch slot:
images -> ResNet + FPN -> instance queries (anchors + features, plus denoising copies of the GT in training)
-> decoder layers (deformable aggregation over cameras and levels, FFN, refinement, heads); after the single-frame
layers the instance bank swaps in the instances cached from the slot's previous frame, and after the last layer it
caches this frame's best instances and assigns tracking ids.

The model knows of the arm that trains it only the logit count, the score function, and an optional query generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .anchor_encoder import AnchorEncoder
from .anchors import uniform_anchors
from .backbone import ResNet
from .config import ModelConfig
from .decoder import DecoderLayer
from .denoising import attention_mask, make_denoising_queries
from .depth import DenseDepth
from .grid_mask import GridMask
from .instance_bank import InstanceBank
from .neck import FPN
from .outputs import Denoising, LayerOutput, ModelOutput
from .postprocess import post_process
from .refinement import RefinementHead
from .temporal_denoising import carry_groups, copy_instances, insert_carried

ScoreFn = Callable[[Tensor], Tensor]  # logits [..., K] -> per-class probabilities [..., C]
QueryGenerator = Callable[[list[Tensor], Tensor], Tensor]  # (feature maps, base features [A, D]) -> [B, A, D]


class Sparse4D(nn.Module):
    def __init__(
        self,
        config: ModelConfig | Mapping[str, Any],
        num_classes: int,
        num_logits: int | None = None,
        score_fn: ScoreFn | None = None,
        query_generator: QueryGenerator | None = None,
        anchors: Tensor | None = None,
    ):
        """``num_classes`` C comes from the data (the warehouse's classes or a user's own), never a default here.
        ``num_logits``: C or C + 1, from the classification scheme (default C). ``score_fn`` turns logits into
        per-class probabilities for the instance bank and post-processing (default sigmoid, only valid for C
        logits). ``query_generator`` replaces the per-anchor instance features (PaQ); ``anchors [A, 11]`` from
        ``anchors_from_gt`` (or later ``set_anchors``), else placeholders spread over ``config.anchor_range``."""
        super().__init__()
        cfg = config if isinstance(config, ModelConfig) else ModelConfig(**dict(config))
        num_logits = num_classes if num_logits is None else num_logits
        if num_logits not in (num_classes, num_classes + 1):
            raise ValueError(f"num_logits must be num_classes ({num_classes}) or num_classes + 1, got {num_logits}")
        if score_fn is None and num_logits != num_classes:
            raise ValueError("score_fn is required with num_classes + 1 logits (e.g. softmax without no-object)")
        self.config, self.num_classes, self.num_logits = cfg, num_classes, num_logits
        self.score_fn: ScoreFn = score_fn if score_fn is not None else torch.sigmoid
        self.query_generator = query_generator
        D = cfg.embed_dims

        self.backbone = ResNet(cfg.depth, cfg.base_channels, cfg.backbone_checkpoint, cfg.freeze_backbone_norm)
        self.neck = FPN(self.backbone.out_channels, D, cfg.num_levels, cfg.neck_start_level)
        self.grid_mask = GridMask(cfg.grid_mask_prob)
        self.register_buffer("image_mean", torch.tensor(cfg.image_mean).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(cfg.image_std).view(3, 1, 1), persistent=False)
        self.depth = (
            DenseDepth(D, cfg.num_depth_layers, cfg.equal_focal, cfg.max_depth, cfg.depth_loss_weight)
            if cfg.num_depth_layers > 0
            else None
        )

        if anchors is None:
            anchors = uniform_anchors(cfg.num_anchor, cfg.anchor_range)
        self.instance_bank = InstanceBank(cfg, anchors)
        self.anchor_encoder = AnchorEncoder(cfg.anchor_embed_dims)
        self.fc_before = nn.Linear(D, 2 * D, bias=False)  # shared by every decoupled attention, as upstream
        self.fc_after = nn.Linear(2 * D, D, bias=False)
        temporal = cfg.num_temp_instances > 0
        self.layers = nn.ModuleList(
            DecoderLayer(
                cfg,
                self.fc_before,
                self.fc_after,
                self_attention=index > 0,
                temporal=temporal and index >= cfg.num_single_frame_decoder,
            )
            for index in range(cfg.num_decoder)
        )
        self.heads = nn.ModuleList(
            RefinementHead(D, num_logits, cfg.with_quality, cfg.velocity_refinement) for _ in range(cfg.num_decoder)
        )

    def set_anchors(self, anchors: Tensor) -> None:
        """Replace the anchors (e.g. by ``anchors_from_gt`` of the training split) and forget the temporal memory."""
        self.instance_bank.set_anchors(anchors)

    def reset_memory(self) -> None:
        self.instance_bank.reset()

    def extract_features(self, img: Tensor) -> list[Tensor]:
        """``img [B, N, 3, H, W]`` in [0, 1] -> FPN levels ``[B, N, D, h, w]``, finest first."""
        B, N = img.shape[:2]
        x = (img.flatten(0, 1) - self.image_mean) / self.image_std
        maps = self.neck(self.backbone(self.grid_mask(x)))
        return [m.unflatten(0, (B, N)) for m in maps]

    def forward(self, batch: Mapping[str, Any], gt: Mapping[str, Any] | None = None) -> ModelOutput:
        """One frame per slot (the batch contract). Denoising queries are made in training mode from
        ``gt["gt_boxes"]`` if ``gt`` is given, else from ``batch["gt_boxes"]`` when present."""
        cfg = self.config
        projection_mat, image_wh = batch["projection_mat"].float(), batch["image_wh"].float()
        feature_maps = self.extract_features(batch["img"])
        B, A = feature_maps[0].shape[0], cfg.num_anchor
        aux_losses = {}
        if self.depth is not None and self.training and batch.get("depth") is not None:
            aux_losses["dense_depth"] = self.depth.loss(self.depth(feature_maps, projection_mat), batch["depth"])

        memory, dt, new_sequence = self.instance_bank.get(batch)
        anchor = self.instance_bank.anchor.expand(B, -1, -1)
        base = self.instance_bank.instance_feature
        feature = base.expand(B, -1, -1) if self.query_generator is None else self.query_generator(feature_maps, base)
        if feature.shape != (B, A, cfg.embed_dims):
            raise ValueError(
                f"query_generator must return [B, num_anchor, embed_dims] = {[B, A, cfg.embed_dims]}, "
                f"got {list(feature.shape)}"
            )
        slot = torch.arange(A, device=anchor.device).expand(B, A)
        temporal = torch.zeros(B, A, dtype=torch.bool, device=anchor.device)

        gt_boxes = (gt if gt is not None else batch).get("gt_boxes")
        gt_ids = (gt if gt is not None else batch).get("gt_ids")
        dn = carried = dn_instance = None
        if self.training and gt_boxes is not None:
            dn = make_denoising_queries(
                gt_boxes, cfg.num_dn_groups, cfg.max_dn_gt, cfg.dn_noise_scale, cfg.dn_cost_weights
            )
        attn_mask = None
        if dn is not None:
            dn_instance = copy_instances(dn, gt_ids) if gt_ids is not None else None
            anchor = torch.cat([anchor, dn.anchor.to(anchor)], dim=1)
            feature = torch.cat([feature, feature.new_zeros(B, dn.anchor.shape[1], feature.shape[-1])], dim=1)
            attn_mask = attention_mask(A, dn, cfg.num_groups)

        anchor_embed = self.anchor_encoder(anchor)
        predictions = []
        for index, (layer, head) in enumerate(zip(self.layers, self.heads, strict=True)):
            feature = layer(feature, anchor, anchor_embed, attn_mask, memory, feature_maps, projection_mat, image_wh)
            anchor, cls, quality = head(feature, anchor, anchor_embed, dt)
            predictions.append((cls, anchor, quality))
            if index + 1 == cfg.num_single_frame_decoder and memory is not None:
                scores = self.score_fn(cls[:, :A].detach())
                feature, anchor, slot, temporal = self.instance_bank.merge(feature, anchor, scores, slot, memory)
                if dn is not None and memory.denoising is not None and dn_instance is not None:
                    dn_feature, dn_anchor, carried, dn_instance = insert_carried(
                        dn,
                        dn_instance,
                        feature[:, A:],
                        anchor[:, A:],
                        memory.denoising,
                        memory.valid,
                        gt_ids,
                        cfg.num_dn_groups,
                    )
                    feature = torch.cat([feature[:, :A], dn_feature], dim=1)
                    anchor = torch.cat([anchor[:, :A], dn_anchor], dim=1)
                    attn_mask = attention_mask(A, carried, cfg.num_groups)
            if index + 1 < len(self.layers):
                anchor_embed = self.anchor_encoder(anchor)

        layers = [LayerOutput(c[:, :A], a[:, :A], None if q is None else q[:, :A]) for c, a, q in predictions]
        denoising = None
        if dn is not None:
            denoising = Denoising(
                layers=[LayerOutput(c[:, A:], a[:, A:], None if q is None else q[:, A:]) for c, a, q in predictions],
                gt_index=dn.gt_index,
                positive=dn.positive,
                valid=dn.valid,
                group=dn.group,
                carried_gt_index=None if carried is None else carried.gt_index,
                carried_positive=None if carried is None else carried.positive,
                carried_valid=None if carried is None else carried.valid,
            )
        final = layers[-1]
        instance_ids, cached_query = self.instance_bank.cache(
            feature[:, :A], final.anchor, self.score_fn(final.cls.detach()), slot, memory, new_sequence, batch
        )
        if self.training and cfg.num_temp_dn_groups > 0:
            self.instance_bank.cache_denoising(
                None
                if dn is None or dn_instance is None
                else carry_groups(
                    dn if carried is None else carried,
                    dn_instance,
                    feature[:, A:],
                    anchor[:, A:],
                    cfg.num_dn_groups,
                    cfg.num_temp_dn_groups,
                )
            )
        return ModelOutput(
            layers=layers,
            denoising=denoising,
            instance_feature=feature[:, :A],
            temporal=temporal,
            anchor_slot=slot,
            aux_losses=aux_losses,
            instance_ids=instance_ids,
            cached_query=cached_query,
            first_temporal_layer=cfg.num_single_frame_decoder,
        )

    def post_process(self, output: ModelOutput) -> list[dict[str, Tensor]]:
        """Detections per slot; see ``postprocess.post_process``."""
        cfg = self.config
        return post_process(output, self.score_fn, cfg.num_output, cfg.score_threshold, cfg.squeeze_classes)
