"""What the model hands to the supervision and to post-processing: the contract between the two halves.

The model knows nothing of the arm that trains it beyond the logit count (``C`` or ``C + 1``), the score function
its classification scheme uses at inference, and an optional query generator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class LayerOutput:
    """Predictions of one decoder layer for ``Q`` queries."""

    cls: Tensor  # [B, Q, K] classification logits, K = C or C + 1
    anchor: Tensor  # [B, Q, 11] refined anchors; boxes via geometry.anchor_to_box
    quality: Tensor | None = None  # [B, Q, 2] logits of (centerness, yawness), None if the layer has no quality head


@dataclass
class Denoising:
    """Noisy copies of the ground truth run through the decoder beside the normal queries (kept apart by a mask).

    Queries are padded to a common count ``Q_dn`` over the batch; ``valid`` marks the real ones.
    """

    layers: list[LayerOutput]  # per decoder layer, [B, Q_dn, ...]
    # [B, Q_dn] long: index into the slot's gt list of the GT each copy was made from (for a positive: the GT it must
    # learn, which the Hungarian match of copies to GT may have changed, as upstream), -1 for padding
    gt_index: Tensor
    positive: Tensor  # [B, Q_dn] bool: a positive copy (learn the GT) or a negative one (learn background)
    valid: Tensor  # [B, Q_dn] bool
    group: Tensor  # [B, Q_dn] long: denoising group of each copy
    # Where temporal denoising groups replaced copies after the single-frame layers: the targets of the layers from
    # ``ModelOutput.first_temporal_layer`` on (same meaning as the three above)
    carried_gt_index: Tensor | None = None
    carried_positive: Tensor | None = None
    carried_valid: Tensor | None = None


@dataclass
class ModelOutput:
    """Everything one forward pass produced for a batch of frames."""

    layers: list[LayerOutput]  # per decoder layer, normal queries only
    denoising: Denoising | None  # None outside training or without ground truth
    instance_feature: Tensor  # [B, Q, D] after the last layer
    # temporal and anchor_slot describe the query order of the layers from the first temporal one on (the final
    # layer's order); the single-frame layers before see the fresh queries in anchor order
    temporal: Tensor  # [B, Q] bool: the query was propagated from the previous frame by the instance bank
    anchor_slot: Tensor  # [B, Q] long: the anchor (query slot) a query started from, for query-utilisation stats
    aux_losses: dict[str, Tensor] = field(default_factory=dict)  # e.g. PaQ pattern diversity, dense depth
    instance_ids: Tensor | None = None  # [B, Q] long tracking ids from the instance bank, -1 = no id (not confident)
    # [B, T] long: the final-layer queries the instance bank cached for the next frame, in the order they take the
    # first T query slots there (the temporal assignment follows them)
    cached_query: Tensor | None = None
    # the first layer that sees last frame's instances and carried denoising groups (``num_single_frame_decoder``)
    first_temporal_layer: int = 1

    @property
    def final(self) -> LayerOutput:
        return self.layers[-1]
