"""The training rules of the semantics profiles, each against values worked out by hand from TAO's and upstream's
formulas (the comments give the arithmetic)."""

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from sparse4d_lab import geometry
from sparse4d_lab.data.config import CLASSES
from sparse4d_lab.model import LayerOutput, ModelOutput, tiny
from sparse4d_lab.model.denoising import make_denoising_queries
from sparse4d_lab.model.outputs import Denoising
from sparse4d_lab.model.postprocess import post_process
from sparse4d_lab.model.refinement import RefinementHead
from sparse4d_lab.model.sparse4d import Sparse4D
from sparse4d_lab.model.temporal_denoising import CarriedDenoising, copy_instances, insert_carried, instance_index
from sparse4d_lab.semantics import SEMANTICS, profile
from sparse4d_lab.supervision.criterion import Sparse4DCriterion
from sparse4d_lab.supervision.losses import centerness_loss
from sparse4d_lab.supervision.schemes import build_scheme
from sparse4d_lab.supervision.temporal import keep_then_match

C = 4
LOG2 = math.log(2.0)


def boxes_at(xs: list[float]) -> torch.Tensor:
    """Unit cubes on the floor at ``x``, yaw 0, at rest."""
    boxes = torch.zeros(len(xs), 10)
    boxes[:, 0] = torch.tensor(xs)
    boxes[:, 2] = 0.5
    boxes[:, 3:6] = 1.0
    return boxes


def layer_at(xs: list[float], probability: float | list[float] = 0.5, quality: float = 0.0) -> LayerOutput:
    """One slot of queries at ``x`` with every class at ``probability`` (a logit per query if a list)."""
    p = torch.tensor(probability).expand(len(xs))
    logits = torch.log(p / (1 - p))[:, None].expand(len(xs), C).clone()
    return LayerOutput(
        cls=logits[None].requires_grad_(True),
        anchor=geometry.box_to_anchor(boxes_at(xs))[None].requires_grad_(True),
        quality=torch.full((1, len(xs), 2), quality).requires_grad_(True),
    )


def output_of(layers: list[LayerOutput], temporal: int = 0, cached: list[int] | None = None, dn=None) -> ModelOutput:
    Q = layers[-1].cls.shape[1]
    return ModelOutput(
        layers=layers,
        denoising=dn,
        instance_feature=torch.zeros(1, Q, 8),
        temporal=(torch.arange(Q) < temporal)[None],
        anchor_slot=torch.arange(Q)[None],
        cached_query=None if cached is None else torch.tensor([cached]),
    )


def criterion(**rules) -> Sparse4DCriterion:
    return Sparse4DCriterion(build_scheme("focal_onehot", C), **rules)


# cls_threshold_to_reg


@pytest.mark.parametrize(("threshold", "moves"), [(0.05, False), (0.0, True)])
def test_a_positive_at_probability_004_gets_no_box_gradient_under_the_threshold(threshold, moves):
    layer = layer_at([0.1], probability=0.04)
    out = output_of([layer])
    criterion(cls_threshold_to_reg=threshold)(out, [boxes_at([0.0])], [torch.tensor([1])]).total.backward()
    assert bool(layer.anchor.grad.abs().sum() > 0) == moves
    assert layer.cls.grad.abs().sum() > 0  # the classification loss is never masked


def test_the_threshold_keeps_every_positive_in_the_divisor():
    # Two positives, 0.1 m off in x: one at probability 0.04 (no box loss), one at 0.9.
    # box = 0.25 x (weight 2 x 0.1) / 2 positives = 0.025; without the threshold both: 0.25 x 0.4 / 2 = 0.05.
    gt = [boxes_at([0.0, 5.0])]
    labels = [torch.tensor([1, 2])]
    layer = layer_at([0.1, 5.1], probability=[0.04, 0.9])
    terms = criterion(cls_threshold_to_reg=0.05)(output_of([layer]), gt, labels).terms
    assert terms["box_0"].item() == pytest.approx(0.025, rel=1e-5)
    terms = criterion(cls_threshold_to_reg=0.0)(output_of([layer]), gt, labels).terms
    assert terms["box_0"].item() == pytest.approx(0.05, rel=1e-5)


# Denoising normalisation


def denoising(offset: float) -> Denoising:
    """3 positive copies of 3 GTs (``offset`` m off in x) and 3 negative copies, every logit 0 (p = 0.5)."""
    xs = [0.0 + offset, 3.0 + offset, 6.0 + offset, 1.5, 4.5, 7.5]
    return Denoising(
        layers=[layer_at(xs)],
        gt_index=torch.tensor([[0, 1, 2, 0, 1, 2]]),
        positive=torch.tensor([[True] * 3 + [False] * 3]),
        valid=torch.ones(1, 6, dtype=torch.bool),
        group=torch.zeros(1, 6, dtype=torch.long),
    )


@pytest.mark.parametrize(("avg_factor", "divisor"), [("valid", 6), ("positive", 3)])
def test_denoising_losses_are_divided_by_the_valid_denoising_queries(avg_factor, divisor):
    # Focal (alpha 0.25, gamma 2) at p = 0.5: a target-1 entry costs 0.25 x 0.5^2 x log 2 = 0.0625 log 2, a
    # target-0 entry 0.75 x 0.5^2 x log 2 = 0.1875 log 2. A positive row: 0.0625 + 3 x 0.1875 = 0.625 (x log 2);
    # a negative row: 4 x 0.1875 = 0.75. Sum over 3 + 3 rows: 4.125 log 2, x loss weight 2.
    # Box: each positive 0.1 m off in x, weight 2: 3 x 0.2 = 0.6, x 0.25.
    gt = [boxes_at([0.0, 3.0, 6.0])]
    out = output_of([layer_at([20.0])], dn=denoising(0.1))
    terms = criterion(dn_avg_factor=avg_factor)(out, gt, [torch.tensor([0, 1, 2])]).terms
    assert terms["dn_cls_0"].item() == pytest.approx(2 * 4.125 * LOG2 / divisor, rel=1e-5)
    assert terms["dn_box_0"].item() == pytest.approx(0.25 * 0.6 / divisor, rel=1e-5)
    assert "dn_cns_0" not in terms and "dn_yns_0" not in terms  # neither TAO nor upstream has them


def test_denoising_quality_loss_is_a_switch():
    out = output_of([layer_at([20.0])], dn=denoising(0.0))
    terms = criterion(dn_quality_loss=True)(out, [boxes_at([0.0, 3.0, 6.0])], [torch.tensor([0, 1, 2])]).terms
    assert {"dn_cns_0", "dn_yns_0"} <= set(terms)


# Quality losses


@pytest.mark.parametrize(("detach", "expected"), [(False, math.exp(-0.5)), (True, 0.0)])
def test_the_centerness_target_moves_the_box_centre_unless_detached(detach, expected):
    # BCE(logit, t) has dL/dt = -logit; t = exp(-|dx|), dt/dx = -t for dx > 0. At logit 1, dx = 0.5:
    # dL/dx = (-1) x (-exp(-0.5)) = exp(-0.5) (avg_factor 1).
    pred = geometry.box_to_anchor(boxes_at([0.5])).requires_grad_(True)
    target = geometry.box_to_anchor(boxes_at([0.0]))
    (centerness_loss(torch.tensor([1.0]), pred, target, 1.0, detach_target=detach) + 0 * pred.sum()).backward()
    assert pred.grad[0, geometry.X].item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("reduction", "expected"), [("mean", 0.25 * LOG2), ("avg_factor", 2 * 0.25 * LOG2 / 3)])
def test_yawness_is_a_mean_under_tao_and_divided_by_the_positives_upstream(reduction, expected):
    # Three positives, one below cls_threshold_to_reg. Each regressed one points the right way (target 1) with a
    # yawness logit 0: Gaussian focal -log(0.5) x (1 - 0.5)^2 = 0.25 log 2. TAO: mean over the 2 regressed;
    # upstream: sum over them / 3 positives.
    layer = layer_at([0.0, 3.0, 6.0], probability=[0.9, 0.9, 0.04])
    gt = [boxes_at([0.0, 3.0, 6.0])]
    terms = criterion(yawness_reduction=reduction)(output_of([layer]), gt, [torch.tensor([0, 1, 2])]).terms
    assert terms["yns_0"].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize(("mode", "expected"), [("add", 4.0), ("replace", 3.0)])
def test_velocity_is_added_to_the_anchor_upstream_and_replaces_it_in_tao(mode, expected):
    # The head's velocity output 0.3 m over dt = 0.1 s is 3 m/s; the anchor moves at 1 m/s.
    head = RefinementHead(8, C, with_quality=False, velocity=mode)
    last = head.layers[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
        last.bias[geometry.ANCHOR_VEL.start] = 0.3
    anchor = torch.zeros(1, 1, 11)
    anchor[..., geometry.ANCHOR_VEL.start] = 1.0
    refined, _, _ = head(torch.zeros(1, 1, 8), anchor, torch.zeros(1, 1, 8), torch.tensor([0.1]))
    assert refined[0, 0, geometry.ANCHOR_VEL.start].item() == pytest.approx(expected, rel=1e-6)


# Temporal target assignment


def test_a_held_pair_below_the_threshold_survives_a_better_hungarian_match():
    # Hungarian alone: q0-g1 + q1-g0 = 0.2 beats q0-g0 + q1-g1 = 0.8. q0 held g0 at cost 0.3 < 0.5: it keeps it,
    # and q1, q2 compete for g1 (0.5 against 2.0).
    cost = torch.tensor([[0.3, 0.1], [0.1, 0.5], [2.5, 2.0]])
    query, gt = keep_then_match(cost, torch.tensor([0, -1, -1]), threshold=0.5)
    assert sorted(zip(query.tolist(), gt.tolist(), strict=True)) == [(0, 0), (1, 1)]
    query, gt = keep_then_match(cost, torch.tensor([0, -1, -1]), threshold=0.25)
    assert sorted(zip(query.tolist(), gt.tolist(), strict=True)) == [(0, 1), (1, 0)]


def frame_t(rule: Sparse4DCriterion) -> list[float]:
    """Frame t (first of its sequence): instance 3 at x = 9, instance 7 at x = 0.6; queries at x = 0.6, 0, 9.
    Hungarian gives q0 instance 7 and q2 instance 3; the bank caches q0 and q1."""
    xs = [0.6, 0.0, 9.0]
    result = rule(
        output_of([layer_at(xs)] * 2, cached=[0, 1]),
        [boxes_at([9.0, 0.6])],
        [torch.tensor([1, 1])],
        [torch.tensor([3, 7])],
    )
    assert result.assignment.gt_index[0].tolist() == [1, -1, 0]
    return xs


@pytest.mark.parametrize(("rules", "expected"), [({"temporal_assign": True}, [0, 1, -1]), ({}, [1, 0, -1])])
def test_a_query_matched_to_instance_7_keeps_it_in_the_next_frame(rules, expected):
    """Frame t + 1: instance 7 at x = 0 (listed first now), instance 3 at x = 1. Matching cost = 2 x focal cost +
    0.25 x weighted L1 (weight 2 on x); at p = 0.5 the focal cost is (0.0625 - 0.1875) log 2 = -0.0866 for every
    pair. q0 (x 0.6): 0.127 to instance 7, 0.027 to instance 3; q1 (x 0): -0.173 and 0.327. Hungarian alone gives
    q0 instance 3 (0.027 - 0.173 = -0.146 against 0.127 + 0.327 = 0.454); the temporal rule keeps q0 on instance 7
    (0.127 < 0.5) and q1 takes instance 3."""
    rule = criterion(**rules)
    xs = frame_t(rule)
    second = output_of([layer_at(xs)] * 2, temporal=2, cached=[0, 1])
    result = rule(second, [boxes_at([0.0, 1.0])], [torch.tensor([1, 1])], [torch.tensor([7, 3])])
    assert result.assignment.gt_index[0].tolist() == expected


def test_temporal_assignment_forgets_an_instance_that_left_and_a_slot_without_memory():
    rule = criterion(temporal_assign=True)
    xs = frame_t(rule)
    # Instance 7 has left; instance 5 stands at x = 0. A stale hold would keep q0 on GT 0 (cost 0.127 < 0.5);
    # Hungarian gives it to q1 (-0.173).
    result = rule(
        output_of([layer_at(xs)] * 2, temporal=2, cached=[0, 1]),
        [boxes_at([0.0])],
        [torch.tensor([1])],
        [torch.tensor([5])],
    )
    assert result.assignment.gt_index[0].tolist() == [-1, 0, -1]
    # A slot that starts a new sequence (no cached queries) is matched afresh although instance 7 is back.
    frame_t(rule)
    result = rule(
        output_of([layer_at(xs)] * 2, temporal=0, cached=[0, 1]),
        [boxes_at([0.0, 1.0])],
        [torch.tensor([1, 1])],
        [torch.tensor([7, 3])],
    )
    assert result.assignment.gt_index[0].tolist() == [1, 0, -1]


# Evaluation


def test_instance_lookup_in_a_frame_without_objects_finds_every_instance_gone():
    """A warehouse frame can be empty (every object still to walk in): the carried copies and held queries of the
    previous frame all lose their instance, rather than the lookup failing on an empty reduction."""
    ids = torch.tensor([3, 5, -1])
    assert instance_index(ids, torch.zeros(0, dtype=torch.long)).tolist() == [-1, -1, -1]
    assert instance_index(ids, torch.tensor([5, 9, 3])).tolist() == [2, 0, -1]


def test_the_tiny_models_topk_cap_binds_at_taos_share_of_the_queries():
    # TAO and upstream keep 300 of 900 queries; the tiny model keeps 32 of its 96.
    cfg = tiny()
    assert cfg.num_output / cfg.num_anchor == pytest.approx(300 / 900, abs=0.01)
    layer = layer_at([float(i) for i in range(cfg.num_anchor)], probability=0.5)
    detections = post_process(output_of([layer]), torch.sigmoid, cfg.num_output, 0.0)
    assert len(detections[0]["scores_3d"]) == 32


# Profiles


CONF = Path(__file__).parents[1] / "experiments" / "conf"


@pytest.mark.parametrize("name", sorted(SEMANTICS))
def test_each_profile_file_sets_the_librarys_profile(name):
    with initialize_config_module("experiments.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"semantics={name}", "+ab=loss_fix"])
    assert cfg.semantics == name
    for node, values in profile(name).items():
        assert {k: cfg[node][k] for k in values} == values
    assert {p.stem for p in (CONF / "semantics").glob("*.yaml")} == set(SEMANTICS)


def test_studies_default_to_tao_and_an_unknown_profile_is_refused():
    with initialize_config_module("experiments.conf", version_base="1.3"):
        assert compose("train", overrides=["+ab=loss_fix"]).semantics == "tao"
    with pytest.raises(ValueError, match="valid: tao, upstream"):
        profile("mmdet")


def test_varifocal_arms_match_with_focal_alpha_025():
    # RT-DETR's matcher: cost = alpha (1-p)^2 (-log p) - (1-alpha) p^2 (-log(1-p)); at p = 0.5 and alpha 0.25:
    # (0.0625 - 0.1875) log 2 = -0.125 log 2 (alpha 0.75 would give +0.125 log 2).
    for name in ("vfl", "vfl_clamped"):
        cost = build_scheme(name, C).match_cost(torch.zeros(1, C), torch.tensor([2]))
        assert cost.item() == pytest.approx(-0.125 * LOG2, rel=1e-5)


# Temporal denoising groups


def test_carried_denoising_copies_learn_their_instances_current_box_or_background():
    # This frame: GTs of instances 7 and 3, 2 groups of [small 0, small 1, large 0, large 1]. The previous frame
    # cached one group of 2 copies, a positive of instance 3 and a negative of instance 3 (its one GT then).
    dn = make_denoising_queries([boxes_at([0.0, 4.0])], 2, 32, (0.0,) * 11, (2.0, 2.0, 2.0) + (0.0,) * 8)
    instance = copy_instances(dn, [torch.tensor([7, 3])])
    assert instance[0].tolist() == [7, 3, 7, 3] * 2
    carried = CarriedDenoising(
        feature=torch.ones(1, 1, 2, 8),
        anchor=torch.full((1, 1, 2, 11), 5.0),
        positive=torch.tensor([[[True, False]]]),
        valid=torch.ones(1, 1, 2, dtype=torch.bool),
        instance=torch.tensor([[[3, 3]]]),
    )
    feature, anchor, targets, merged = insert_carried(
        dn, instance, torch.zeros(1, 8, 8), dn.anchor, carried, torch.tensor([True]), [torch.tensor([7, 3])], 2
    )
    assert feature[0, :, 0].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]  # the group is padded to 4 copies
    assert anchor[0, 1, 0] == 5.0 and anchor[0, 4, 0] == 0.0
    assert targets.valid[0].tolist() == [True, True, False, False] + [True] * 4
    assert targets.positive[0].tolist() == [True, False, False, False, True, True, False, False]
    assert targets.gt_index[0, 0] == 1  # instance 3 is GT 1 now
    assert merged[0, :2].tolist() == [3, 3]
    # Instance 3 has left: the carried positive learns background.
    _, _, targets, _ = insert_carried(
        dn, instance, torch.zeros(1, 8, 8), dn.anchor, carried, torch.tensor([True]), [torch.tensor([7, 5])], 2
    )
    assert targets.valid[0, 0] and not targets.positive[0, 0]
    # A slot without memory keeps its fresh copies.
    _, _, targets, _ = insert_carried(
        dn, instance, torch.zeros(1, 8, 8), dn.anchor, carried, torch.tensor([False]), [torch.tensor([7, 3])], 2
    )
    assert torch.equal(targets.positive, dn.positive) and torch.equal(targets.valid, dn.valid)


def test_a_training_model_carries_denoising_groups_to_the_next_frame():
    cfg = tiny(num_anchor=12, num_temp_instances=6, embed_dims=32, anchor_embed_dims=(16, 4, 4, 8), num_groups=2)
    model = Sparse4D(cfg, len(CLASSES)).train()
    batch = {
        "img": torch.rand(1, 1, 3, 32, 48),
        "projection_mat": torch.eye(4)[None, None],
        "image_wh": torch.tensor([[[48.0, 32.0]]]),
        "timestamp": torch.tensor([0.0]),
        "ego_pose": torch.eye(4)[None],
        "is_first": torch.tensor([True]),
        "gt_boxes": [boxes_at([0.0, 3.0])],
        "gt_labels": [torch.tensor([0, 1])],
        "gt_ids": [torch.tensor([7, 3])],
    }
    assert model(batch).denoising.carried_gt_index is None
    batch = {**batch, "timestamp": torch.tensor([0.1]), "is_first": torch.tensor([False])}
    batch["gt_boxes"], batch["gt_labels"], batch["gt_ids"] = [boxes_at([3.0])], [torch.tensor([1])], [torch.tensor([3])]
    output = model(batch)
    dn = output.denoising
    # One of two groups is carried (tiny: num_temp_dn_groups 1): its 4 copies are cut to this frame's 2.
    assert dn.carried_valid.sum() == 4 and output.first_temporal_layer == cfg.num_single_frame_decoder
    result = Sparse4DCriterion(build_scheme("focal_onehot", C))(model(batch), batch["gt_boxes"], batch["gt_labels"])
    assert torch.isfinite(result.total)
