"""Instance bank: the learnable anchors and the temporal memory that makes Sparse4D a tracker.

After every frame the bank caches each slot's top-T instances by confidence (a cached instance keeps the larger of
its decayed old confidence and its new one), with their features, refined anchors, instance ids and the anchor slot
they started from. At the next frame of the same sequence the cached anchors are moved to the new timestamp
(constant velocity, then the ego motion between the two batch frames) and, after the single-frame layers, replace
the T least confident fresh queries. Cached tensors are detached: no back-propagation through time.

Unlike upstream, a slot starts afresh at the first frame of a sequence (``is_first``) or when its sequence id
changes; propagated anchors keep sin before cos; training and evaluation keep separate memories, so validation never
corrupts the training state. Slots are positions in the batch: when a batch shrinks the trailing slots are dropped
and the others keep their memory (the temporal sampler only ever removes finished slots from the end); new
trailing slots start afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .. import geometry
from .config import ModelConfig
from .temporal_denoising import CarriedDenoising


@dataclass
class Memory:
    """What the bank hands to the current frame; ``[B, T, ...]`` per slot, moved to the current batch frame."""

    feature: Tensor  # [B, T, D]
    anchor: Tensor  # [B, T, 11]
    confidence: Tensor  # [B, T]
    instance_id: Tensor  # [B, T] long, -1 where the instance never got an id
    slot: Tensor  # [B, T] long, the anchor each cached instance started from
    valid: Tensor  # [B] bool: the slot continues a sequence whose previous frame is cached
    denoising: CarriedDenoising | None = None  # temporal denoising groups, anchors moved like the instances'


@dataclass
class _State:
    """What the bank keeps between frames, in the frame it was cached in."""

    feature: Tensor
    anchor: Tensor
    confidence: Tensor
    instance_id: Tensor
    slot: Tensor
    timestamp: Tensor  # [B] float64
    ego_pose: Tensor  # [B, 4, 4] float64
    sequence_id: Tensor | None  # [B]
    next_id: Tensor  # [B] long: the next instance id of each slot's sequence
    denoising: CarriedDenoising | None = None


def propagate_anchors(anchor: Tensor, dt: Tensor, transform: Tensor) -> Tensor:
    """Move anchors ``[B, T, 11]`` by their velocity for ``dt [B]`` seconds, then apply the rigid ``transform
    [B, 4, 4]`` from the previous batch frame to the current one (rotating position, heading and velocity)."""
    rot, shift = transform[:, None, :3, :3], transform[:, None, :3, 3]
    velocity = anchor[..., geometry.ANCHOR_VEL]
    centre = anchor[..., geometry.X : geometry.Z + 1] + velocity * dt[:, None, None]
    centre = (rot @ centre.unsqueeze(-1)).squeeze(-1) + shift
    heading = torch.stack([anchor[..., geometry.COS_YAW], anchor[..., geometry.SIN_YAW]], dim=-1)
    cos, sin = (rot[..., :2, :2] @ heading.unsqueeze(-1)).squeeze(-1).unbind(-1)
    velocity = (rot @ velocity.unsqueeze(-1)).squeeze(-1)
    size = anchor[..., geometry.LOG_L : geometry.LOG_H + 1]
    return torch.cat([centre, size, sin.unsqueeze(-1), cos.unsqueeze(-1), velocity], dim=-1)


def _fit(x: Tensor, batch_size: int) -> Tensor:
    """Cut or zero-pad the slot dimension to ``batch_size``."""
    if len(x) >= batch_size:
        return x[:batch_size]
    return torch.cat([x, x.new_zeros(batch_size - len(x), *x.shape[1:])])


def _gather(x: Tensor, index: Tensor) -> Tensor:
    """``x [B, Q, ...]``, ``index [B, K]`` -> ``[B, K, ...]``."""
    return x.gather(1, index.reshape(*index.shape, *([1] * (x.dim() - 2))).expand(-1, -1, *x.shape[2:]))


class InstanceBank(nn.Module):
    def __init__(self, cfg: ModelConfig, anchors: Tensor):
        super().__init__()
        self.num_anchor, self.num_temp = cfg.num_anchor, cfg.num_temp_instances
        self.confidence_decay, self.id_threshold = cfg.confidence_decay, cfg.score_threshold
        self.default_time_interval, self.max_time_interval = cfg.default_time_interval, cfg.max_time_interval
        self.anchor = nn.Parameter(self._check(anchors).clone())
        features = torch.zeros(cfg.num_anchor, cfg.embed_dims)
        if cfg.learnable_instance_feature:
            self.instance_feature = nn.Parameter(nn.init.xavier_uniform_(features))
        else:  # upstream feat_grad=False: zero features, queries differ by their anchor embedding only
            self.register_buffer("instance_feature", features)
        self._states: dict[bool, _State | None] = {True: None, False: None}  # by training mode

    def _check(self, anchors: Tensor) -> Tensor:
        anchors = torch.as_tensor(anchors, dtype=torch.float32)
        if anchors.shape != (self.num_anchor, geometry.ANCHOR_DIM):
            raise ValueError(
                f"anchors must be [num_anchor={self.num_anchor}, {geometry.ANCHOR_DIM}], got {tuple(anchors.shape)}; "
                "build them with anchors_from_gt(boxes, labels, num_anchor) or change model.num_anchor"
            )
        return anchors

    def set_anchors(self, anchors: Tensor) -> None:
        with torch.no_grad():
            self.anchor.copy_(self._check(anchors))
        self.reset()

    def reset(self) -> None:
        """Forget both memories (training and evaluation)."""
        self._states = {True: None, False: None}

    def get(self, batch: dict[str, Any]) -> tuple[Memory | None, Tensor, Tensor]:
        """Memory for this batch (None if no slot has one), each slot's time interval ``dt [B]`` for the velocity
        head (the default where a slot has no previous frame), and ``new_sequence [B]`` bool."""
        device = self.anchor.device
        timestamp = batch["timestamp"].to(device, torch.float64)
        B = len(timestamp)
        is_first = batch.get("is_first")
        new_sequence = torch.zeros(B, dtype=torch.bool, device=device) if is_first is None else is_first.to(device)
        state = self._states[self.training]
        default = torch.full((B,), self.default_time_interval, device=device)
        if state is None:
            return None, default, torch.ones_like(new_sequence)
        known = torch.arange(B, device=device) < len(state.timestamp)
        new_sequence = new_sequence | ~known
        sequence_id = batch.get("sequence_id")
        if sequence_id is not None and state.sequence_id is not None:
            new_sequence = new_sequence | (_fit(state.sequence_id, B) != sequence_id.to(device))
        raw_dt = timestamp - _fit(state.timestamp, B)
        valid = ~new_sequence & (raw_dt.abs() <= self.max_time_interval)
        dt = torch.where(valid & (raw_dt != 0), raw_dt, default.to(raw_dt)).float()
        if self.num_temp == 0 or not bool(valid.any()):
            return None, dt, new_sequence
        ego_pose = batch["ego_pose"].to(device, torch.float64)
        previous_pose = torch.where(known[:, None, None], _fit(state.ego_pose, B), ego_pose)
        transform = (torch.linalg.inv(ego_pose) @ previous_pose).float()
        denoising = None
        if state.denoising is not None:
            carried = state.denoising
            anchor = _fit(carried.anchor, B)
            denoising = CarriedDenoising(
                feature=_fit(carried.feature, B),
                anchor=propagate_anchors(anchor.flatten(1, 2), raw_dt.float(), transform).view_as(anchor),
                positive=_fit(carried.positive, B),
                valid=_fit(carried.valid, B),
                instance=_fit(carried.instance + 1, B) - 1,  # new slots: padding (-1)
            )
        memory = Memory(
            feature=_fit(state.feature, B),
            anchor=propagate_anchors(_fit(state.anchor, B), raw_dt.float(), transform),
            confidence=_fit(state.confidence, B),
            instance_id=_fit(state.instance_id, B),
            slot=_fit(state.slot, B),
            valid=valid,
            denoising=denoising,
        )
        return memory, dt, new_sequence

    def cache_denoising(self, carried: CarriedDenoising | None) -> None:
        """Keep this frame's temporal denoising groups (after ``cache``), or forget them (None)."""
        state = self._states[self.training]
        if state is not None:
            state.denoising = carried

    def merge(
        self, feature: Tensor, anchor: Tensor, scores: Tensor, slot: Tensor, memory: Memory
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """After the single-frame layers: in slots with memory, the cached instances take the first T places and
        the ``A - T`` most confident fresh queries the rest. Denoising queries past ``A`` are left alone.

        ``scores [B, A, C]`` per-class probabilities. Returns feature, anchor, slot ``[B, A]`` and temporal ``[B, A]``.
        """
        A, T = self.num_anchor, self.num_temp
        keep = scores.max(dim=-1).values.topk(A - T, dim=1).indices
        merged = [
            torch.cat([memory.feature, _gather(feature[:, :A], keep)], dim=1),
            torch.cat([memory.anchor, _gather(anchor[:, :A], keep)], dim=1),
            torch.cat([memory.slot, slot.gather(1, keep)], dim=1),
        ]
        valid = memory.valid
        feature_a, anchor_a, slot = (
            torch.where(valid.view(-1, *([1] * (m.dim() - 1))), m, x[:, :A])
            for m, x in zip(merged, (feature, anchor, slot), strict=True)
        )
        temporal = valid[:, None] & (torch.arange(A, device=valid.device) < T)
        feature = torch.cat([feature_a, feature[:, A:]], dim=1)
        anchor = torch.cat([anchor_a, anchor[:, A:]], dim=1)
        return feature, anchor, slot, temporal

    def cache(
        self,
        feature: Tensor,
        anchor: Tensor,
        scores: Tensor,
        slot: Tensor,
        memory: Memory | None,
        new_sequence: Tensor,
        batch: dict[str, Any],
    ) -> tuple[Tensor, Tensor]:
        """Keep the top-T instances of this frame for the next one; return the instance ids ``[B, A]`` and the
        cached queries ``[B, T]`` (the first T query slots of the next frame, in order).

        Queries carried from the previous frame keep their ids; a fresh query whose confidence reaches the score
        threshold gets the next id of its slot's sequence (ids restart at 0 with every sequence).
        """
        B = len(feature)
        confidence = scores.detach().max(dim=-1).values  # [B, A]
        instance_id = torch.full_like(confidence, -1, dtype=torch.long)
        decayed = confidence
        state = self._states[self.training]
        next_id = torch.zeros(B, dtype=torch.long, device=confidence.device)
        if state is not None:
            next_id = torch.where(new_sequence, next_id, _fit(state.next_id, B))
        if memory is not None:
            T, carried = self.num_temp, memory.valid[:, None]
            old = torch.maximum(memory.confidence * self.confidence_decay, confidence[:, :T])
            decayed = torch.cat([torch.where(carried, old, confidence[:, :T]), confidence[:, T:]], dim=1)
            instance_id[:, :T] = torch.where(carried, memory.instance_id, -1)
        new = (instance_id < 0) & (confidence >= self.id_threshold)
        instance_id = torch.where(new, next_id[:, None] + new.cumsum(dim=1) - 1, instance_id)
        next_id = next_id + new.sum(dim=1)

        top_confidence, top = decayed.topk(self.num_temp, dim=1)
        sequence_id = batch.get("sequence_id")
        self._states[self.training] = _State(
            feature=_gather(feature.detach(), top),
            anchor=_gather(anchor.detach(), top),
            confidence=top_confidence,
            instance_id=instance_id.gather(1, top),
            slot=slot.gather(1, top),
            timestamp=batch["timestamp"].to(confidence.device, torch.float64),
            ego_pose=batch["ego_pose"].to(confidence.device, torch.float64),
            sequence_id=None if sequence_id is None else sequence_id.to(confidence.device).clone(),
            next_id=next_id,
        )
        return instance_id, top
