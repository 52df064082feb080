"""Sparse4D components in isolation: deformable aggregation against a loop reference, the instance bank's
propagation and ids, denoising queries, post-processing, anchors, backbone checkpoints, the config."""

import math

import pytest
import torch

from sparse4d_lab import geometry
from sparse4d_lab.errors import ConfigError
from sparse4d_lab.model import LayerOutput, ModelConfig, ModelOutput, anchors_from_gt, tao_r101, tiny
from sparse4d_lab.model.backbone import ResNet
from sparse4d_lab.model.deformable import SampledProduct, deformable_aggregation
from sparse4d_lab.model.denoising import attention_mask, make_denoising_queries
from sparse4d_lab.model.depth import focal_length
from sparse4d_lab.model.grid_mask import GridMask
from sparse4d_lab.model.instance_bank import InstanceBank, propagate_anchors
from sparse4d_lab.model.postprocess import post_process

# ----------------------------------------------------------------------------- deformable aggregation


def reference_aggregation(feature_maps, key_points, weights, projection_mat, image_wh):
    """Point by point, camera by camera, level by level, in float64: what the aggregation must compute."""
    B, Q, P = key_points.shape[:3]
    N, G = projection_mat.shape[1], weights.shape[-1]
    C = feature_maps[0].shape[2]
    c = C // G
    out = torch.zeros(B, Q, C, dtype=torch.float64)
    for b in range(B):
        for q in range(Q):
            for n in range(N):
                for p in range(P):
                    point = torch.cat([key_points[b, q, p].double(), torch.ones(1, dtype=torch.float64)])
                    cam = projection_mat[b, n].double() @ point
                    if cam[2] <= geometry.MIN_DEPTH:
                        continue  # behind the camera
                    u, v = float(cam[0] / cam[2]), float(cam[1] / cam[2])
                    width, height = (float(s) for s in image_wh[b, n])
                    if not (0 <= u < width and 0 <= v < height):
                        continue  # outside the image
                    for level, fm in enumerate(feature_maps):
                        h, w = fm.shape[-2:]
                        x, y = u / width * w - 0.5, v / height * h - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        sample = torch.zeros(C, dtype=torch.float64)
                        for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
                            if 0 <= xi < w and 0 <= yi < h:
                                sample += (1 - abs(x - xi)) * (1 - abs(y - yi)) * fm[b, n, :, yi, xi].double()
                        for g in range(G):
                            out[b, q, g * c : (g + 1) * c] += (
                                weights[b, q, n, level, p, g] * sample[g * c : (g + 1) * c]
                            )
    return out


def simple_cameras(N, width=64, height=48):
    """Cameras at the origin turned about z, looking along the horizontal plane, f = 40 px."""
    mats = []
    for n in range(N):
        yaw = 2 * math.pi * n / N
        target = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0], dtype=torch.float64)
        ext = geometry.look_at_extrinsic(torch.zeros(3, dtype=torch.float64), target)
        mats.append(geometry.intrinsic_matrix(40.0, 40.0, width / 2, height / 2) @ ext)
    return torch.stack(mats).float()[None], torch.tensor([[width, height]] * N, dtype=torch.float32)[None]


def aggregation_inputs(seed=0, Q=5, P=6, G=2, C=8):
    gen = torch.Generator().manual_seed(seed)
    projection, wh = simple_cameras(3)
    maps = [torch.randn(1, 3, C, 6, 8, generator=gen), torch.randn(1, 3, C, 3, 4, generator=gen)]
    # Points around the cameras at 2-6 m, some above/below the field of view, some behind every camera's plane.
    radius = 2 + 4 * torch.rand(1, Q, P, generator=gen)
    angle = 2 * math.pi * torch.rand(1, Q, P, generator=gen)
    z = (torch.rand(1, Q, P, generator=gen) - 0.5) * 6
    points = torch.stack([radius * angle.cos(), radius * angle.sin(), z], dim=-1)
    weights = torch.randn(1, Q, 3, 2, P, G, generator=gen).flatten(2, 4).softmax(2).reshape(1, Q, 3, 2, P, G)
    return maps, points, weights, projection, wh


@pytest.mark.parametrize("method", ["matmul", "grid_sample"])
def test_aggregation_matches_the_loop_reference(method):
    maps, points, weights, projection, wh = aggregation_inputs()
    expected = reference_aggregation(maps, points, weights, projection, wh)
    got = deformable_aggregation(maps, points, weights, projection, wh, method)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def test_both_aggregation_methods_have_the_same_gradients():
    maps, points, weights, projection, wh = aggregation_inputs(seed=1)
    probe = torch.randn(1, points.shape[1], maps[0].shape[2])
    grads = []
    for method in ("matmul", "grid_sample"):
        leaves = [m.clone().requires_grad_() for m in maps] + [points.clone().requires_grad_()]
        w = weights.clone().requires_grad_()
        (deformable_aggregation(leaves[:2], leaves[2], w, projection, wh, method) * probe).sum().backward()
        grads.append([x.grad for x in [*leaves, w]])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_sampled_product_backward_matches_finite_differences():
    # The hand-written backward in float64: key points strictly inside cells (finite differences must not cross
    # a pixel border), some hidden, several cameras and levels, and pixels read by more than one key point.
    gen = torch.Generator().manual_seed(2)
    B, N, Q, P, G, c = 1, 2, 3, 4, 2, 3
    sizes = ((5, 4), (3, 2))
    uv = (torch.rand(B, N, Q, P, 2, generator=gen, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    visible = torch.rand(B, N, Q, P, generator=gen) > 0.25
    weights = torch.rand(B, Q, N, len(sizes), P, G, generator=gen, dtype=torch.float64).requires_grad_()
    table = torch.randn(B, G, N * sum(w * h for w, h in sizes), c, generator=gen, dtype=torch.float64)
    table.requires_grad_()
    assert torch.autograd.gradcheck(SampledProduct.apply, (uv, visible, weights, table, sizes))


def test_aggregation_backward_runs_under_mixed_precision():
    # trainer=gpu trains under bf16 autocast; on the CPU the same autocast reaches the sampling product.
    maps, points, weights, projection, wh = aggregation_inputs(seed=3)
    grads = []
    for bf16 in (False, True):
        leaves = [m.clone().requires_grad_() for m in maps] + [points.clone().requires_grad_()]
        w = weights.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = deformable_aggregation(leaves[:2], leaves[2], w, projection, wh, "matmul")
        assert out.dtype == (torch.bfloat16 if bf16 else torch.float32)
        out.float().sum().backward()
        grads.append([x.grad for x in [*leaves, w]])
    for exact, mixed in zip(*grads, strict=True):
        assert mixed.dtype == exact.dtype
        assert (mixed - exact).abs().max() <= 0.05 * exact.abs().max()  # bf16 keeps ~3 significant digits


@pytest.mark.parametrize("method", ["matmul", "grid_sample"])
def test_points_outside_every_camera_or_behind_it_contribute_nothing(method):
    # One camera with identity rotation: pixel = (x / z, y / z) + principal point, depth = z.
    projection = geometry.intrinsic_matrix(1.0, 1.0, 0.0, 0.0).float()[None, None]
    wh = torch.tensor([[[64.0, 48.0]]])
    maps = [torch.rand(1, 1, 4, 6, 8) + 1.0]  # strictly positive, so any sample would show
    inside = torch.tensor([30.0, 20.0, 1.0])
    outside = torch.tensor([100.0, 20.0, 1.0])  # right of the image
    # Behind the camera, yet a naive depth clamp (upstream) maps it to pixel (30, 20), inside the image.
    behind = torch.tensor([3e-4, 2e-4, -1.0])
    points = torch.stack([inside, outside, behind])[None, :, None]  # three queries of one point each
    weights = torch.ones(1, 3, 1, 1, 1, 1)
    out = deformable_aggregation(maps, points, weights, projection, wh, method)
    assert out[0, 0].abs().sum() > 0
    assert torch.equal(out[0, 1:], torch.zeros_like(out[0, 1:]))
    # Within one query, a hidden point adds nothing to the visible one's sum.
    both = torch.stack([inside, behind])[None, None]
    together = deformable_aggregation(maps, both, torch.ones(1, 1, 1, 1, 2, 1), projection, wh, method)
    torch.testing.assert_close(together[0, 0], out[0, 0])


# ----------------------------------------------------------------------------- instance bank

SMALL_BANK = dict(num_anchor=6, num_temp_instances=3, embed_dims=8, anchor_embed_dims=(2, 2, 2, 2), num_groups=2)


def bank_batch(B, t, first, ego=None, sequence=None):
    batch = {
        "timestamp": torch.full((B,), t, dtype=torch.float64),
        "is_first": torch.as_tensor(first).expand(B).clone(),
        "ego_pose": torch.eye(4).expand(B, 4, 4) if ego is None else ego,
    }
    if sequence is not None:
        batch["sequence_id"] = torch.as_tensor(sequence)
    return batch


def run_frame(bank, batch, confidences):
    """One frame of the bank with given per-query confidences ``[B, A]``: get, merge (if any memory), cache."""
    B, A = confidences.shape
    memory, _, new_sequence = bank.get(batch)
    feature = torch.randn(B, A, 8)
    anchor = bank.anchor.detach().expand(B, -1, -1).clone()
    slot = torch.arange(A).expand(B, A)
    scores = confidences[..., None]
    if memory is not None:
        feature, anchor, slot, _ = bank.merge(feature, anchor, scores, slot, memory)
    ids, _ = bank.cache(feature, anchor, scores, slot, memory, new_sequence, batch)
    return memory, ids, slot


def test_constant_velocity_anchor_is_propagated_exactly():
    box = torch.tensor([[1.0, 2.0, 0.9, 0.6, 0.5, 1.8, 0.3, 1.5, -0.5, 0.0]])
    anchor = geometry.box_to_anchor(box)[None]  # [1, 1, 11]
    moved = propagate_anchors(anchor, torch.tensor([0.1]), torch.eye(4)[None])
    expected = box.clone()
    expected[0, :3] += box[0, 7:] * 0.1
    torch.testing.assert_close(geometry.anchor_to_box(moved)[0], expected, atol=1e-6, rtol=0)
    assert moved[0, 0, geometry.SIN_YAW] == pytest.approx(math.sin(0.3))  # sin stays before cos
    assert moved[0, 0, geometry.COS_YAW] == pytest.approx(math.cos(0.3))


def test_propagation_follows_a_moving_rig():
    """Same world motion seen from an ego frame that turns and drives: propagate, go back to world, compare."""
    world_box = torch.tensor([[4.0, -1.0, 0.9, 0.6, 0.5, 1.8, 0.7, 1.0, 0.5, 0.0]], dtype=torch.float64)

    def pose(yaw, x, y):
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = geometry.rotation_z(torch.tensor(yaw, dtype=torch.float64))
        m[:2, 3] = torch.tensor([x, y], dtype=torch.float64)
        return m

    prev, cur = pose(0.2, 1.0, 2.0), pose(0.5, 1.5, 2.2)

    def to_ego(box, ego):  # world box -> box in the ego frame
        inv = torch.linalg.inv(ego)
        out = box.clone()
        out[:, :3] = box[:, :3] @ inv[:3, :3].T + inv[:3, 3]
        out[:, 7:] = box[:, 7:] @ inv[:3, :3].T
        out[:, 6] = geometry.wrap_angle(box[:, 6] - math.atan2(ego[1, 0], ego[0, 0]))
        return out

    moved_world = world_box.clone()
    moved_world[:, :3] += world_box[:, 7:] * 0.25
    anchor = geometry.box_to_anchor(to_ego(world_box, prev))[None]
    transform = (torch.linalg.inv(cur) @ prev)[None]
    moved = propagate_anchors(anchor, torch.tensor([0.25], dtype=torch.float64), transform)
    torch.testing.assert_close(geometry.anchor_to_box(moved)[0], to_ego(moved_world, cur), atol=1e-9, rtol=0)


def test_bank_propagates_cached_anchors_between_timestamps():
    cfg = tiny(**SMALL_BANK)
    anchors = geometry.box_to_anchor(torch.tensor([[i, 0, 0.9, 0.5, 0.5, 1.8, 0.4, 2.0, 1.0, 0.0] for i in range(6)]))
    bank = InstanceBank(cfg, anchors)
    run_frame(bank, bank_batch(1, 10.0, True), torch.linspace(0.9, 0.4, 6)[None])
    memory, dt, _ = bank.get(bank_batch(1, 10.2, False))
    assert memory is not None and bool(memory.valid.all())
    assert dt.tolist() == pytest.approx([0.2])
    expected = anchors[:3].clone()
    expected[:, :3] += expected[:, 8:] * 0.2
    torch.testing.assert_close(memory.anchor[0], expected, atol=1e-6, rtol=0)
    assert memory.slot[0].tolist() == [0, 1, 2]


def test_ids_persist_across_frames_and_restart_after_a_reset():
    bank = InstanceBank(tiny(**SMALL_BANK), torch.zeros(6, 11))
    # Frame 0: queries 0 and 3 are confident -> ids 0 and 1 (in query order).
    _, ids, _ = run_frame(bank, bank_batch(1, 0.0, True), torch.tensor([[0.9, 0.01, 0.01, 0.8, 0.01, 0.01]]))
    assert ids[0].tolist() == [0, -1, -1, 1, -1, -1]
    # Frame 1: the cached pair sits in the first places and keeps its ids though less confident now; a new
    # confident fresh query gets the next id.
    memory, ids, slot = run_frame(bank, bank_batch(1, 0.1, False), torch.tensor([[0.3, 0.2, 0.01, 0.01, 0.7, 0.01]]))
    assert memory is not None
    cached = dict(zip(slot[0, :3].tolist(), ids[0, :3].tolist(), strict=True))
    assert cached[0] == 0 and cached[3] == 1
    assert ids[0, 3:].max() == 2
    # Frame 2, a new sequence: no memory, ids restart at 0.
    memory, ids, _ = run_frame(bank, bank_batch(1, 0.2, True), torch.tensor([[0.01, 0.9, 0.01, 0.01, 0.01, 0.01]]))
    assert memory is None
    assert ids[0].tolist() == [-1, 0, -1, -1, -1, -1]


def test_reset_is_per_slot_and_follows_sequence_ids():
    bank = InstanceBank(tiny(**SMALL_BANK), torch.zeros(6, 11))
    conf = torch.tensor([[0.9, 0.8, 0.7, 0.01, 0.01, 0.01]] * 2)
    run_frame(bank, bank_batch(2, 0.0, True, sequence=[4, 7]), conf)
    memory, _, _ = bank.get(bank_batch(2, 0.1, torch.tensor([False, True]), sequence=[4, 7]))
    assert memory.valid.tolist() == [True, False]
    memory, _, _ = bank.get(bank_batch(2, 0.1, False, sequence=[4, 9]))  # slot 1 silently changed sequence
    assert memory.valid.tolist() == [True, False]
    memory, _, _ = bank.get(bank_batch(2, 5.0, False, sequence=[4, 7]))  # a gap longer than max_time_interval
    assert memory is None


def test_cached_instances_are_detached():
    bank = InstanceBank(tiny(**SMALL_BANK), torch.zeros(6, 11))
    feature = torch.randn(1, 6, 8, requires_grad=True)
    anchor = torch.zeros(1, 6, 11, requires_grad=True)
    batch = bank_batch(1, 0.0, True)
    bank.cache(
        feature * 2,
        anchor * 2,
        torch.rand(1, 6, 1),
        torch.arange(6)[None],
        None,
        torch.ones(1, dtype=torch.bool),
        batch,
    )
    memory, _, _ = bank.get(bank_batch(1, 0.1, False))
    assert not memory.feature.requires_grad and not memory.anchor.requires_grad


def test_batch_size_changes_keep_leading_slots_and_start_new_ones():
    bank = InstanceBank(tiny(**SMALL_BANK), torch.zeros(6, 11))
    run_frame(bank, bank_batch(2, 0.0, True), torch.rand(2, 6))
    memory, _, _ = bank.get(bank_batch(1, 0.1, False))  # the trailing slot finished
    assert memory.valid.tolist() == [True]
    run_frame(bank, bank_batch(1, 0.1, False), torch.rand(1, 6))
    memory, _, new_sequence = bank.get(bank_batch(3, 0.2, False))
    assert memory.valid.tolist() == [True, False, False]
    assert new_sequence.tolist() == [False, True, True]


def test_training_and_evaluation_keep_separate_memories():
    bank = InstanceBank(tiny(**SMALL_BANK), torch.zeros(6, 11))
    run_frame(bank.train(), bank_batch(1, 0.0, True), torch.rand(1, 6))
    assert bank.eval().get(bank_batch(1, 0.1, False))[0] is None
    run_frame(bank, bank_batch(1, 7.0, True), torch.rand(1, 6))
    assert bank.train().get(bank_batch(1, 0.1, False))[0] is not None


# ----------------------------------------------------------------------------- denoising


def test_denoising_groups_positives_and_mask():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    boxes = [
        torch.cat([torch.rand(3, 3, generator=gen) * 10, torch.ones(3, 3), torch.zeros(3, 4)], 1),
        torch.zeros(0, 10),
    ]
    dn = make_denoising_queries(boxes, 2, 32, tiny().dn_noise_scale, tiny().dn_cost_weights)
    assert dn.anchor.shape == (2, 2 * 2 * 3, 11)
    assert dn.valid[0].all() and not dn.valid[1].any()
    assert not dn.positive[1].any() and (dn.gt_index[1] == -1).all()
    for g in range(2):
        in_group = dn.group[0] == g
        assert int((dn.positive[0] & in_group).sum()) == 3  # one positive per GT and group
        assert sorted(dn.gt_index[0][dn.positive[0] & in_group].tolist()) == [0, 1, 2]
    # Positives are the copies close to their GT, negatives the far ones.
    target = geometry.box_to_anchor(boxes[0])
    dist = (dn.anchor[0, :, :3] - target[dn.gt_index[0], :3]).norm(dim=-1)
    assert dist[dn.positive[0]].mean() < dist[~dn.positive[0]].mean()

    mask = attention_mask(5, dn, num_heads=2).view(2, 2, 17, 17)[:, 0]  # [B, total, total]
    assert not mask[:, :5, :5].any() and mask[:, :5, 5:].all() and mask[:, 5:, :5].all()
    group = dn.group[0]
    sees = ~mask[0, 5:, 5:]
    assert not (sees & (group[:, None] != group[None, :])).any()  # groups never see each other
    assert (~mask[1, 5:, 5:]).sum() == 12  # an empty slot's padding only sees itself
    assert make_denoising_queries([torch.zeros(0, 10)], 2, 32, tiny().dn_noise_scale, tiny().dn_cost_weights) is None


# ----------------------------------------------------------------------------- post-processing


def test_post_processing_regathers_class_scores_and_reports_every_query():
    gen = torch.Generator().manual_seed(0)
    B, Q, C = 2, 12, 3
    boxes = torch.cat([torch.rand(B, Q, 3, generator=gen), torch.ones(B, Q, 3), torch.zeros(B, Q, 4)], -1)
    layer = LayerOutput(
        cls=torch.randn(B, Q, C, generator=gen) * 3,
        anchor=geometry.box_to_anchor(boxes),
        quality=torch.randn(B, Q, 2, generator=gen) * 3,
    )
    ids = torch.arange(B * Q).view(B, Q)
    output = ModelOutput([layer], None, torch.zeros(B, Q, 4), torch.zeros(B, Q, dtype=torch.bool), ids, {}, ids)
    for squeeze in (True, False):
        results = post_process(output, torch.sigmoid, num_output=8, score_threshold=0.3, squeeze_classes=squeeze)
        for b, res in enumerate(results):
            q = res["query_index"]
            probs = layer.cls[b].sigmoid()
            assert (res["cls_scores"] >= 0.3).all()
            torch.testing.assert_close(res["cls_scores"], probs[q, res["labels_3d"]])
            torch.testing.assert_close(res["scores_3d"], res["cls_scores"] * layer.quality[b, q, 0].sigmoid())
            assert (res["scores_3d"][:-1] >= res["scores_3d"][1:]).all()
            assert torch.equal(res["instance_ids"], ids[b, q])
            torch.testing.assert_close(res["boxes_3d"], boxes[b, q])
            assert torch.equal(res["query_scores"], probs.max(-1).values)
            torch.testing.assert_close(res["query_class_scores"], probs)  # every class's column, not only the max
            assert torch.equal(res["query_kept"].nonzero().squeeze(-1), q.unique())
            assert len(q) <= 8
            if squeeze:
                assert len(q.unique()) == len(q)


# ----------------------------------------------------------------------------- anchors, backbone, config


def test_anchors_from_gt_are_reproducible_and_class_sized():
    gen = torch.Generator().manual_seed(0)
    S = 200
    labels = torch.randint(0, 2, (S,), generator=gen)
    centres = torch.rand(S, 3, generator=gen) * 4 + labels[:, None] * 20.0  # two far-apart class regions
    sizes = torch.where(labels[:, None] == 0, torch.tensor([0.3, 0.5, 1.7]), torch.tensor([0.8, 0.6, 0.4]))
    boxes = torch.cat([centres, sizes, torch.zeros(S, 4)], 1)
    anchors = anchors_from_gt(boxes, labels, 10, seed=3)
    assert anchors.shape == (10, 11) and anchors.dtype == torch.float32
    assert torch.equal(anchors, anchors_from_gt(boxes, labels, 10, seed=3))
    decoded = geometry.anchor_to_box(anchors)
    far = decoded[:, 0] > 10
    torch.testing.assert_close(decoded[far, 3:6], torch.tensor([0.8, 0.6, 0.4]).expand(int(far.sum()), 3))
    torch.testing.assert_close(decoded[~far, 3:6], torch.tensor([0.3, 0.5, 1.7]).expand(int((~far).sum()), 3))
    assert (decoded[:, 6:] == 0).all()
    few = anchors_from_gt(boxes[:4], labels[:4], 10, seed=0)  # fewer boxes than anchors
    assert len(torch.unique(few[:, :3], dim=0)) == 10
    with pytest.raises(ValueError, match="no ground-truth"):
        anchors_from_gt(torch.zeros(0, 10), torch.zeros(0, dtype=torch.long), 10)


def test_backbone_loads_a_local_checkpoint(tmp_path):
    source = ResNet(18, 8)
    state = {**source.state_dict(), "fc.weight": torch.zeros(3, 64), "fc.bias": torch.zeros(3)}
    torch.save(state, tmp_path / "r18.pth")
    loaded = ResNet(18, 8, checkpoint=str(tmp_path / "r18.pth"))
    assert torch.equal(loaded.layer4[1].conv2.weight, source.layer4[1].conv2.weight)
    with pytest.raises(ValueError, match="backbone_checkpoint"):
        ResNet(18, 16, checkpoint=str(tmp_path / "r18.pth"))
    with pytest.raises(FileNotFoundError, match="backbone_checkpoint"):
        ResNet(18, 8, checkpoint=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("freeze", [False, True])
def test_frozen_backbone_norms_keep_their_statistics_and_weights(freeze):
    """A fine-tune from a base holds the batch norms as loaded (TAO's freeze_norm); the convolutions still learn."""
    torch.manual_seed(0)
    backbone = ResNet(18, 4, freeze_norm=freeze).train()
    norm, conv = backbone.layer2[0].bn1, backbone.layer2[0].conv1
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in backbone.parameters() if p.requires_grad], lr=0.1)
    sum(out.square().mean() for out in backbone(torch.rand(2, 3, 64, 64))).backward()
    optimizer.step()
    after = backbone.state_dict()
    assert norm.training is not freeze
    assert not torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])
    for key in ("layer2.0.bn1.running_mean", "layer2.0.bn1.running_var", "layer2.0.bn1.weight", "layer2.0.bn1.bias"):
        assert torch.equal(after[key], before[key]) is freeze, key
    assert (norm.weight.grad is None) is freeze and conv.weight.grad is not None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"depth": 20}, "depth"),
        ({"embed_dims": 98}, "embed_dims"),
        ({"anchor_embed_dims": (64, 16, 16, 16)}, "anchor_embed_dims"),
        ({"num_temp_instances": 160}, "num_temp_instances"),
        ({"num_single_frame_decoder": 0}, "num_single_frame_decoder"),
        ({"dn_noise_scale": (1.0, 2.0)}, "dn_noise_scale"),
        ({"aggregation": "cuda"}, "aggregation"),
        ({"num_depth_layers": 5}, "num_depth_layers"),
        ({"confidence_decay": 1.5}, "confidence_decay"),
    ],
)
def test_impossible_configs_name_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"model\.{field}"):
        tiny(**overrides)


def test_presets_and_yaml_lists():
    card = tao_r101()
    assert (card.depth, card.embed_dims, card.num_anchor, card.num_temp_instances) == (101, 256, 900, 600)
    assert (card.num_decoder, card.num_single_frame_decoder, card.num_groups, card.num_levels) == (6, 1, 8, 4)
    assert (card.num_points, card.confidence_decay) == (13, 0.8)
    assert ModelConfig(anchor_embed_dims=[64, 16, 16, 32]) == tiny()  # YAML lists become tuples


def test_grid_mask_removes_cells_only_while_training():
    torch.manual_seed(0)
    images = torch.ones(2, 3, 64, 96)
    mask = GridMask(prob=1.0)
    masked = mask.train()(images)
    removed = float((masked == 0).float().mean())
    assert 0.05 < removed < 0.6
    assert torch.equal(masked[0], masked[1])  # one grid for the whole batch, as upstream
    assert torch.equal(mask.eval()(images), images)


def test_focal_length_is_read_from_the_projection():
    ext = geometry.look_at_extrinsic(torch.tensor([1.0, 2.0, 3.0]).double(), torch.zeros(3).double())
    projection = (geometry.intrinsic_matrix(300.0, 300.0, 50.0, 40.0) @ ext).float()
    assert float(focal_length(projection[None, None])) == pytest.approx(300.0, rel=1e-4)
