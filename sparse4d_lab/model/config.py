"""Architecture of the Sparse4D v3 model: one flat dataclass (easy to write in YAML), validated on construction.

Two presets: ``tiny()``, the default that trains on a 2-core CPU within the project's budget, and ``tao_r101()``,
the architecture of the TAO Sparse4D model card (ResNet-101, FPN 256, 900 anchors, 600 temporal, 6 decoders).
Fields that change behaviour rather than size keep upstream's values in both presets unless noted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import require

BACKBONE_DEPTHS = (18, 34, 50, 101)
AGGREGATION_METHODS = ("matmul", "grid_sample")
VELOCITY_MODES = ("add", "replace")
ANCHOR_DIM = 11


@dataclass(frozen=True)
class ModelConfig:
    # Image backbone (ResNet written here) and FPN neck.
    depth: int = 18
    base_channels: int = 16  # width of the stem and first stage; 64 is the standard ResNet
    backbone_checkpoint: str | None = None  # local torchvision-layout ResNet state dict, loaded if given
    freeze_backbone_norm: bool = False  # batch norms fixed at their loaded values (TAO, from pretrained weights)
    neck_start_level: int = 1  # first backbone stage fed to the FPN (0 = stride 4)
    num_levels: int = 3  # FPN outputs; beyond the backbone's stages, extra stride-2 convs on the last output
    grid_mask_prob: float = 0.0  # GridMask augmentation during training (upstream and TAO: 0.7)
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # ImageNet statistics, images in [0, 1]
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    # Instances.
    embed_dims: int = 128
    num_anchor: int = 96
    num_temp_instances: int = 48  # cached by the instance bank for the next frame; 0 = single-frame model
    learnable_instance_feature: bool = False  # upstream feat_grad=False: fresh queries start from zero features
    anchor_range: tuple[float, ...] = (-8.0, -6.0, 0.0, 8.0, 6.0, 2.0)  # placeholder anchors before set_anchors
    anchor_embed_dims: tuple[int, int, int, int] = (64, 16, 16, 32)  # position, size, yaw, velocity; sum = embed

    # Decoder.
    num_decoder: int = 3
    num_single_frame_decoder: int = 1
    num_groups: int = 4  # deformable-aggregation groups and attention heads (32 and 64 channels each, as the card)
    num_learnable_points: int = 6
    fixed_point_scale: float = 0.45  # 7 fixed key points: the centre and +-scale of the box along each axis
    ffn_ratio: int = 4
    dropout: float = 0.0  # upstream 0.1; on a CPU the random masks cost about 15 % of a training step
    attn_drop: float = 0.15  # drops whole (camera, key point) pairs from the aggregation weights while training
    aggregation: str = "matmul"  # deformable-aggregation method, same results: "matmul" (fast on small maps, CPU)
    # or "grid_sample" (memory grows with image size only through the feature maps; for large images)
    with_quality: bool = True  # centerness and yawness heads
    velocity_refinement: str = "add"  # the head's velocity: "add" to the anchor's (upstream) or "replace" it (TAO)

    # Instance bank.
    confidence_decay: float = 0.6  # upstream Sparse4D v3; the TAO card uses 0.8
    default_time_interval: float = 0.1  # used where a slot has no previous frame (upstream 0.5, TAO 1/30)
    max_time_interval: float = 2.0  # a larger gap to the cached frame starts the slot afresh

    # Denoising.
    num_dn_groups: int = 2  # upstream 5
    num_temp_dn_groups: int = 1  # groups carried to the next frame (temporal_denoising.py); TAO and upstream 3 of 5
    max_dn_gt: int = 32
    dn_noise_scale: tuple[float, ...] = (2.0, 2.0, 2.0) + (0.5,) * 8  # per anchor dimension
    dn_cost_weights: tuple[float, ...] = (2.0, 2.0, 2.0, 0.5, 0.5, 0.5) + (0.0,) * 5  # copy-to-GT matching cost

    # Post-processing. TAO and upstream keep the top 300 of 900 queries; the tiny preset keeps the same share (32 of
    # 96), so the cap binds as it does there.
    num_output: int = 32
    score_threshold: float = 0.05  # also the confidence a query needs to get a new instance id
    squeeze_classes: bool = True  # one detection (its best class) per query, as upstream when tracking

    # Optional dense depth branch (trained only when a batch carries depth maps).
    num_depth_layers: int = 0  # FPN levels with a depth head; 0 disables the branch
    depth_loss_weight: float = 0.2
    equal_focal: float = 100.0
    max_depth: float = 60.0

    def __post_init__(self) -> None:
        # Hydra/OmegaConf hand over lists (or ListConfigs); tuples keep the config hashable and comparable.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Sequence) and not isinstance(value, str | tuple):
                object.__setattr__(self, f.name, tuple(value))
        validate(self)

    @property
    def num_fixed_points(self) -> int:
        return 7

    @property
    def num_points(self) -> int:
        return self.num_fixed_points + self.num_learnable_points

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def validate(cfg: ModelConfig) -> None:
    """Fail at once, naming the field and the fix, for architectures that cannot be built."""
    require(cfg.depth in BACKBONE_DEPTHS, "model.depth", f"must be one of {BACKBONE_DEPTHS}, got {cfg.depth}")
    require(cfg.base_channels >= 1, "model.base_channels", f"must be >= 1, got {cfg.base_channels}")
    require(0 <= cfg.neck_start_level <= 3, "model.neck_start_level", f"must lie in [0, 3], got {cfg.neck_start_level}")
    require(cfg.num_levels >= 1, "model.num_levels", f"must be >= 1 (FPN outputs from stage {cfg.neck_start_level} on)")
    require(0 <= cfg.grid_mask_prob <= 1, "model.grid_mask_prob", "must lie in [0, 1]")
    require(len(cfg.image_mean) == 3 and len(cfg.image_std) == 3, "model.image_mean", "image_mean/std need 3 values")
    require(min(cfg.image_std) > 0, "model.image_std", "must be positive")
    require(
        cfg.embed_dims % cfg.num_groups == 0,
        "model.embed_dims",
        f"{cfg.embed_dims} must be divisible by num_groups={cfg.num_groups}",
    )
    require(
        len(cfg.anchor_embed_dims) == 4 and sum(cfg.anchor_embed_dims) == cfg.embed_dims,
        "model.anchor_embed_dims",
        f"needs 4 sizes (position, size, yaw, velocity) summing to embed_dims={cfg.embed_dims}, "
        f"got {cfg.anchor_embed_dims}",
    )
    require(cfg.num_anchor >= 1, "model.num_anchor", f"must be >= 1, got {cfg.num_anchor}")
    require(
        0 <= cfg.num_temp_instances < cfg.num_anchor,
        "model.num_temp_instances",
        f"must lie in [0, num_anchor={cfg.num_anchor}) so fresh queries remain, got {cfg.num_temp_instances}",
    )
    lo, hi = cfg.anchor_range[:3], cfg.anchor_range[3:]
    require(
        len(cfg.anchor_range) == 6 and all(a < b for a, b in zip(lo, hi, strict=True)),
        "model.anchor_range",
        f"must be (x_min, y_min, z_min, x_max, y_max, z_max) with min < max, got {cfg.anchor_range}",
    )
    require(cfg.num_decoder >= 1, "model.num_decoder", f"must be >= 1, got {cfg.num_decoder}")
    require(
        1 <= cfg.num_single_frame_decoder <= cfg.num_decoder,
        "model.num_single_frame_decoder",
        f"must lie in [1, num_decoder={cfg.num_decoder}]: temporal instances join after the single-frame layers",
    )
    require(cfg.num_learnable_points >= 0, "model.num_learnable_points", "must be >= 0")
    require(0 < cfg.fixed_point_scale <= 0.5, "model.fixed_point_scale", "must lie in (0, 0.5] (box units)")
    require(cfg.ffn_ratio >= 1, "model.ffn_ratio", f"must be >= 1, got {cfg.ffn_ratio}")
    require(0 <= cfg.dropout < 1, "model.dropout", "must lie in [0, 1)")
    require(0 <= cfg.attn_drop < 1, "model.attn_drop", "must lie in [0, 1)")
    require(
        cfg.aggregation in AGGREGATION_METHODS,
        "model.aggregation",
        f"must be one of {AGGREGATION_METHODS}, got {cfg.aggregation!r}",
    )
    require(
        cfg.velocity_refinement in VELOCITY_MODES,
        "model.velocity_refinement",
        f"must be one of {VELOCITY_MODES}, got {cfg.velocity_refinement!r}",
    )
    require(0 <= cfg.confidence_decay <= 1, "model.confidence_decay", "must lie in [0, 1]")
    require(cfg.default_time_interval > 0, "model.default_time_interval", "must be positive (seconds)")
    require(cfg.max_time_interval > 0, "model.max_time_interval", "must be positive (seconds)")
    require(cfg.num_dn_groups >= 0, "model.num_dn_groups", "must be >= 0 (0 disables denoising)")
    require(
        0 <= cfg.num_temp_dn_groups <= cfg.num_dn_groups,
        "model.num_temp_dn_groups",
        f"must lie in [0, num_dn_groups={cfg.num_dn_groups}], got {cfg.num_temp_dn_groups}",
    )
    require(cfg.max_dn_gt >= 1, "model.max_dn_gt", "must be >= 1")
    for name in ("dn_noise_scale", "dn_cost_weights"):
        value = getattr(cfg, name)
        require(
            len(value) == ANCHOR_DIM and min(value) >= 0,
            f"model.{name}",
            f"needs {ANCHOR_DIM} non-negative values, one per anchor dimension, got {value}",
        )
    require(cfg.num_output >= 1, "model.num_output", "must be >= 1")
    require(0 <= cfg.score_threshold <= 1, "model.score_threshold", "must lie in [0, 1]")
    require(
        0 <= cfg.num_depth_layers <= cfg.num_levels,
        "model.num_depth_layers",
        f"must lie in [0, num_levels={cfg.num_levels}]",
    )
    require(
        cfg.equal_focal > 0 and cfg.max_depth > 0, "model.equal_focal", "equal_focal and max_depth must be positive"
    )


def tiny(**overrides) -> ModelConfig:
    """The CPU default: ResNet-18 at a quarter width (stages of 16 to 128 channels), FPN of 128 channels at
    strides 8/16/32, 96 anchors (48 temporal), 3 decoders (1 single-frame), 4 groups, 2 denoising groups, no
    dropout, the decoder's top 32. A training step at batch 2 x 4 cameras of 176 x 96 takes about 0.3 s on 2 CPU cores
    (``benchmarks/bench_model.py``)."""
    return ModelConfig(**overrides)


def tao_r101(**overrides) -> ModelConfig:
    """The TAO Sparse4D model card: ResNet-101, FPN 256 x 4 levels from stride 4, 900 anchors, 600 temporal
    instances, 6 decoders (1 single-frame), 8 groups, 13 key points, confidence decay 0.8, velocity replaced (TAO's
    refinement), 5 denoising groups, the decoder's top 300."""
    card = dict(
        depth=101,
        base_channels=64,
        neck_start_level=0,
        num_levels=4,
        grid_mask_prob=0.7,
        embed_dims=256,
        num_anchor=900,
        num_temp_instances=600,
        anchor_embed_dims=(128, 32, 32, 64),
        num_decoder=6,
        num_single_frame_decoder=1,
        num_groups=8,
        dropout=0.1,
        num_learnable_points=6,
        aggregation="grid_sample",
        confidence_decay=0.8,
        velocity_refinement="replace",
        default_time_interval=0.033333,
        num_dn_groups=5,
        num_temp_dn_groups=3,
        max_dn_gt=128,
        num_output=300,
        num_depth_layers=3,
    )
    return ModelConfig(**{**card, **overrides})
