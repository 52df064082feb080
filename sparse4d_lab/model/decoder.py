"""Decoder layers in Sparse4D v3's operation order.

Upstream's order for 6 decoders with 1 single-frame layer is
``deformable, ffn, norm, refine, (temp_gnn, gnn, norm, deformable, ffn, norm, refine) x 5``: the first layer only
looks at the images, later single-frame layers add self-attention (``gnn``), and temporal layers first attend to
the instances cached from the previous frame (``temp_gnn``). Refinement lives in ``refinement.py``; the loop that
strings layers, refinement and the instance bank together is in ``sparse4d.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig
from .deformable import DeformableAggregation
from .instance_bank import Memory


class DecoupledAttention(nn.Module):
    """Multi-head attention over ``[feature, anchor embedding]`` concatenations (v3's decoupled attention): content
    and position keep their own channels instead of being summed. Values are the features lifted by ``fc_before``;
    ``fc_after`` maps the residual sum back. Both projections are shared by every attention of the decoder, as
    upstream's head owns a single pair."""

    def __init__(self, embed_dims: int, num_heads: int, dropout: float, fc_before: nn.Linear, fc_after: nn.Linear):
        super().__init__()
        self.attention = nn.MultiheadAttention(2 * embed_dims, num_heads, dropout=dropout, batch_first=True)
        nn.init.xavier_uniform_(self.attention.out_proj.weight)
        self.dropout = nn.Dropout(dropout)
        self.fc_before, self.fc_after = fc_before, fc_after

    def forward(
        self, query: Tensor, query_pos: Tensor, key: Tensor, key_pos: Tensor, attn_mask: Tensor | None = None
    ) -> Tensor:
        q = torch.cat([query, query_pos], dim=-1)
        k = torch.cat([key, key_pos], dim=-1)
        out = self.attention(q, k, self.fc_before(key), attn_mask=attn_mask, need_weights=False)[0]
        return self.fc_after(q + self.dropout(out))


class AsymmetricFFN(nn.Module):
    """Feed-forward block from the ``[aggregated, instance]`` concatenation (2D) back to D, with a projected
    identity (upstream's AsymmetricFFN with a pre-norm)."""

    def __init__(self, in_dims: int, embed_dims: int, hidden_dims: int, dropout: float):
        super().__init__()
        self.pre_norm = nn.LayerNorm(in_dims)
        self.layers = nn.Sequential(
            nn.Linear(in_dims, hidden_dims),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden_dims, embed_dims),
            nn.Dropout(dropout),
        )
        self.identity_fc = nn.Linear(in_dims, embed_dims)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre_norm(x)
        return self.identity_fc(x) + self.layers(x)


class DecoderLayer(nn.Module):
    """``[temp_gnn] [gnn, norm] deformable, ffn, norm`` on the instance features."""

    def __init__(
        self, cfg: ModelConfig, fc_before: nn.Linear, fc_after: nn.Linear, self_attention: bool, temporal: bool
    ):
        super().__init__()
        D = cfg.embed_dims

        def attention() -> DecoupledAttention:
            return DecoupledAttention(D, cfg.num_groups, cfg.dropout, fc_before, fc_after)

        self.temporal_attention = attention() if temporal else None
        self.self_attention = attention() if self_attention else None
        self.norm_attention = nn.LayerNorm(D) if self_attention else None
        self.deformable = DeformableAggregation(
            D,
            cfg.num_groups,
            cfg.num_levels,
            cfg.num_learnable_points,
            cfg.fixed_point_scale,
            cfg.attn_drop,
            cfg.aggregation,
        )
        self.ffn = AsymmetricFFN(2 * D, D, cfg.ffn_ratio * D, cfg.dropout)
        self.norm = nn.LayerNorm(D)

    def forward(
        self,
        feature: Tensor,
        anchor: Tensor,
        anchor_embed: Tensor,
        attn_mask: Tensor | None,
        memory: Memory | None,
        feature_maps: list[Tensor],
        projection_mat: Tensor,
        image_wh: Tensor,
    ) -> Tensor:
        if self.temporal_attention is not None:
            feature = self.temporal(feature, anchor_embed, attn_mask, memory)
        if self.self_attention is not None and self.norm_attention is not None:
            feature = self.norm_attention(self.self_attention(feature, anchor_embed, feature, anchor_embed, attn_mask))
        aggregated = self.deformable(feature, anchor, anchor_embed, feature_maps, projection_mat, image_wh)
        return self.norm(self.ffn(aggregated))

    def temporal(self, feature: Tensor, anchor_embed: Tensor, attn_mask: Tensor | None, memory: Memory | None):
        """Attend to last frame's cached instances; their key positions are the embeddings of the propagated
        anchors, which sit in the first T query slots. A slot without history falls back to self-attention, as
        upstream does when nothing is cached."""
        attend = self.temporal_attention
        assert attend is not None
        has_memory = memory is not None and bool(memory.valid.any())
        fallback = None
        if not has_memory or not bool(memory.valid.all()):
            fallback = attend(feature, anchor_embed, feature, anchor_embed, attn_mask)
        if not has_memory:
            return fallback
        cached = memory.feature
        out = attend(feature, anchor_embed, cached, anchor_embed[:, : cached.shape[1]])
        if fallback is None:
            return out
        return torch.where(memory.valid[:, None, None], out, fallback)
