"""The Sparse4D model end to end: shapes for 1..8 cameras and empty GT, gradients, temporal frames on warehouse
data, the hooks the arms use (logit count, score function, query generator), and the TAO card's configuration."""

import math

import pytest
import torch
from torch import nn

from sparse4d_lab import geometry
from sparse4d_lab.data import CLASSES, SequenceDataset, TemporalBatchSampler, WarehouseConfig, collate, load_split
from sparse4d_lab.model import Sparse4D, anchors_from_gt, tao_r101, tiny

# A few thousand times cheaper than the default, same code paths.
MICRO = dict(
    base_channels=8,
    embed_dims=32,
    anchor_embed_dims=(16, 4, 4, 8),
    num_groups=4,
    num_anchor=24,
    num_temp_instances=12,
    num_decoder=3,
    num_dn_groups=2,
)


def micro(**overrides):
    return tiny(**{**MICRO, **overrides})


def make_batch(B=2, N=4, width=96, height=64, t=0.0, first=True, gt_counts=(3, 0), depth=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    mats = []
    for n in range(N):
        angle = 2 * math.pi * n / N
        position = torch.tensor([7.0 * math.cos(angle), 5.0 * math.sin(angle), 4.0], dtype=torch.float64)
        ext = geometry.look_at_extrinsic(position, torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64))
        mats.append(geometry.intrinsic_matrix(width / 2, width / 2, width / 2, height / 2) @ ext)
    boxes = []
    for count in gt_counts[:B]:
        box = torch.zeros(count, 10)
        box[:, :2] = torch.rand(count, 2, generator=gen) * 8 - 4
        box[:, 2:6] = torch.tensor([0.9, 0.5, 0.6, 1.8])
        box[:, 7] = 1.0  # walking along x at 1 m/s
        boxes.append(box)
    batch = {
        "img": torch.rand(B, N, 3, height, width, generator=gen),
        "projection_mat": torch.stack(mats).float().expand(B, -1, -1, -1),
        "image_wh": torch.tensor([width, height], dtype=torch.float32).expand(B, N, 2),
        "timestamp": torch.full((B,), t, dtype=torch.float64),
        "ego_pose": torch.eye(4).expand(B, 4, 4),
        "is_first": torch.full((B,), first),
        "gt_boxes": boxes,
        "gt_labels": [torch.randint(0, 4, (len(b),), generator=gen) for b in boxes],
    }
    if depth:
        batch["depth"] = torch.rand(B, N, height, width, generator=gen) * 10
    return batch


def all_outputs_loss(output):
    layers = list(output.layers) + (list(output.denoising.layers) if output.denoising is not None else [])
    total = sum((layer.cls.sin().sum() + layer.anchor.sin().sum() + layer.quality.sin().sum()) for layer in layers)
    return total + output.instance_feature.sin().sum() + sum(output.aux_losses.values())


def assert_finite(output):
    layers = list(output.layers) + (list(output.denoising.layers) if output.denoising is not None else [])
    for layer in layers:
        for x in (layer.cls, layer.anchor, layer.quality):
            assert torch.isfinite(x).all()
    assert torch.isfinite(output.instance_feature).all()


@pytest.mark.parametrize("cameras", range(1, 9))
def test_shapes_for_one_to_eight_cameras(cameras):
    torch.manual_seed(0)
    cfg = micro()
    model = Sparse4D(cfg, num_classes=4).train()
    batch = make_batch(N=cameras, gt_counts=(3, 0))
    out = model(batch)
    B, A = 2, cfg.num_anchor
    assert len(out.layers) == cfg.num_decoder
    for layer in out.layers:
        assert layer.cls.shape == (B, A, 4) and layer.anchor.shape == (B, A, 11) and layer.quality.shape == (B, A, 2)
    dn = out.denoising
    assert dn is not None and len(dn.layers) == cfg.num_decoder
    Q_dn = cfg.num_dn_groups * 2 * 3  # groups x (positive, negative) x the largest GT count
    assert dn.layers[0].cls.shape == (B, Q_dn, 4) and dn.gt_index.shape == (B, Q_dn)
    assert dn.valid[0].all() and not dn.valid[1].any()  # the empty slot holds padding only
    assert out.instance_feature.shape == (B, A, cfg.embed_dims)
    assert out.temporal.shape == out.anchor_slot.shape == out.instance_ids.shape == (B, A)
    assert_finite(out)

    model.eval()
    with torch.no_grad():
        results = model.post_process(model(make_batch(N=cameras, t=0.1, first=False)))
    assert len(results) == B
    for res in results:
        M = len(res["scores_3d"])
        assert res["boxes_3d"].shape == (M, 10) and res["query_scores"].shape == (A,)
        assert all(len(res[k]) == M for k in ("labels_3d", "cls_scores", "instance_ids", "query_index"))


def test_empty_ground_truth_everywhere():
    model = Sparse4D(micro(), len(CLASSES)).train()
    out = model(make_batch(gt_counts=(0, 0)))
    assert out.denoising is None
    assert_finite(out)
    all_outputs_loss(out).backward()


def test_every_parameter_gets_a_gradient():
    """Default architecture plus the depth branch, two frames so both temporal paths run."""
    torch.manual_seed(0)
    model = Sparse4D(tiny(num_depth_layers=1, learnable_instance_feature=True), len(CLASSES)).train()
    # Leave the initial state where upstream's zero-initialised aggregation weights block the gradient to the
    # camera embedding (a trained model is never there).
    for layer in model.layers:
        nn.init.normal_(layer.deformable.weights_fc.weight, std=0.01)
    for frame in range(2):
        out = model(make_batch(t=0.1 * frame, first=frame == 0, gt_counts=(3, 2), depth=True))
        assert_finite(out)
        all_outputs_loss(out).backward()
    assert bool(out.temporal.any())
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_temporal_frames_on_warehouse_data(tmp_path):
    data_cfg = WarehouseConfig(
        scenes={"train": 1, "val": 0, "test": 0}, frames_per_scene=3, image_size=(96, 64), num_cameras=2
    )
    dataset = SequenceDataset(load_split(data_cfg, "train", tmp_path))
    sampler = TemporalBatchSampler(dataset.lengths, batch_size=1, shuffle=False, pad=False)
    batches = [collate([dataset[i] for i in indices]) for indices in sampler]
    cfg = micro(score_threshold=0.0)  # every query gets an id, so carried ids are visible untrained
    anchors = anchors_from_gt(torch.from_numpy(dataset.gt_boxes()), torch.from_numpy(dataset.gt_labels()), 24)
    model = Sparse4D(cfg, len(CLASSES), anchors=anchors).eval()
    T = cfg.num_temp_instances
    previous = None
    with torch.no_grad():
        for t, batch in enumerate(batches):
            out = model(batch)
            assert_finite(out)
            if t == 0:
                assert not out.temporal.any()
                assert torch.equal(out.anchor_slot[0], torch.arange(24))
            else:
                assert out.temporal[0, :T].all() and not out.temporal[0, T:].any()
                carried = set(out.instance_ids[0, :T].tolist())
                assert carried <= set(previous.tolist())  # temporal queries keep ids from the last frame
                assert out.instance_ids[0, T:].min() > previous.max()  # fresh queries get new ids
            previous = out.instance_ids[0]
    model.train()
    out = model(batches[0])
    assert out.denoising is not None and bool(out.denoising.positive.any())
    assert_finite(out)


def test_logit_count_and_score_function_come_from_the_scheme():
    def softmax_without_no_object(logits):
        return logits.softmax(-1)[..., :-1]

    model = Sparse4D(micro(), num_classes=4, num_logits=5, score_fn=softmax_without_no_object).eval()
    with torch.no_grad():
        out = model(make_batch())
        results = model.post_process(out)
    assert out.final.cls.shape[-1] == 5
    assert all((r["labels_3d"] < 4).all() for r in results)
    with pytest.raises(ValueError, match="score_fn"):
        Sparse4D(micro(), num_classes=4, num_logits=5)
    with pytest.raises(ValueError, match="num_logits"):
        Sparse4D(micro(), num_classes=4, num_logits=7)


def test_query_generator_replaces_the_instance_features():
    seen = {}

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(()))

        def forward(self, feature_maps, base_features):
            seen["maps"] = [tuple(f.shape) for f in feature_maps]
            seen["base"] = tuple(base_features.shape)
            pooled = torch.stack([f.mean(dim=(1, 3, 4)) for f in feature_maps]).mean(0)  # [B, D]
            return self.scale * pooled[:, None].expand(-1, base_features.shape[0], -1)

    generator = Generator()
    model = Sparse4D(micro(), len(CLASSES), query_generator=generator).train()
    all_outputs_loss(model(make_batch())).backward()
    assert seen["base"] == (24, 32)
    assert seen["maps"][0][:3] == (2, 4, 32)
    assert generator.scale.grad is not None
    assert any(p is generator.scale for p in model.parameters())


def test_anchors_can_be_set_and_are_checked():
    model = Sparse4D(micro(), len(CLASSES))
    anchors = geometry.box_to_anchor(torch.tensor([[1.0, 2.0, 0.9, 0.5, 0.5, 1.8, 0.0, 0.0, 0.0, 0.0]] * 24))
    model.set_anchors(anchors)
    assert torch.equal(model.instance_bank.anchor.detach(), anchors)
    with pytest.raises(ValueError, match="num_anchor"):
        model.set_anchors(anchors[:10])


def test_single_frame_model_without_temporal_instances():
    model = Sparse4D(micro(num_temp_instances=0), len(CLASSES)).eval()
    assert all(layer.temporal_attention is None for layer in model.layers)
    with torch.no_grad():
        for t in range(2):
            out = model(make_batch(t=0.1 * t, first=t == 0))
            assert not out.temporal.any()
            assert_finite(out)


def test_ground_truth_can_be_passed_apart_from_the_batch():
    model = Sparse4D(micro(), len(CLASSES)).train()
    batch = make_batch(gt_counts=(0, 0))
    gt = make_batch(gt_counts=(2, 1))
    out = model(batch, gt={"gt_boxes": gt["gt_boxes"], "gt_labels": gt["gt_labels"]})
    assert out.denoising is not None and out.denoising.valid.sum() == 2 * 2 * 3


def test_tao_card_configuration_builds():
    model = Sparse4D(tao_r101(), len(CLASSES))
    backbone = sum(p.numel() for p in model.backbone.parameters())
    assert 42e6 < backbone < 43e6  # ResNet-101 without its classifier
    assert model.instance_bank.anchor.shape == (900, 11)
    assert len(model.layers) == 6 and model.layers[0].temporal_attention is None
    assert all(layer.temporal_attention is not None for layer in model.layers[1:])
    assert len(model.neck.output) + len(model.neck.extra) == 4
    assert model.depth is not None
    model.eval()
    with torch.no_grad():
        out = model(make_batch(B=1, N=1, gt_counts=(2,)))
    assert out.final.cls.shape == (1, 900, 4)
    assert_finite(out)
