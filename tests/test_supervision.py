import inspect
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from sparse4d_lab import geometry
from sparse4d_lab.model.outputs import Denoising, LayerOutput, ModelOutput
from sparse4d_lab.model.pattern_queries import PatternQueries
from sparse4d_lab.supervision.criterion import Sparse4DCriterion
from sparse4d_lab.supervision.matching import hungarian
from sparse4d_lab.supervision.paq import positive_counts, quality_aware_assign
from sparse4d_lab.supervision.schemes import REGISTRY, build_scheme

C = 4
SCHEMES = sorted(REGISTRY)


def test_registry_lists_every_arm_and_rejects_unknown_names():
    assert set(SCHEMES) == {"focal_filtered", "focal_onehot", "focal_tao_patch", "detr_ce", "vfl", "vfl_clamped"}
    with pytest.raises(ValueError, match="valid: detr_ce, focal_filtered"):
        build_scheme("focal", C)
    assert build_scheme("detr_ce", C).num_logits == C + 1
    assert build_scheme("focal_onehot", C).num_logits == C


def grad_rows(name: str) -> torch.Tensor:
    """Gradient of the scheme's loss on three queries: matched (class 1), unmatched (C), denoising negative (-1)."""
    scheme = build_scheme(name, C)
    logits = torch.randn(3, scheme.num_logits, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    labels = torch.tensor([1, C, -1])
    iou = torch.tensor([0.7, 0.0, 0.0])
    scheme.loss(logits, labels, avg_factor=1.0, iou=iou).backward()
    return logits.grad


def test_focal_filtered_gives_unmatched_queries_no_gradient():
    g = grad_rows("focal_filtered")
    assert torch.count_nonzero(g[1]) == 0 and torch.count_nonzero(g[2]) == 0
    assert torch.count_nonzero(g[0]) == C


@pytest.mark.parametrize("name", ["focal_onehot", "vfl"])
def test_fixed_sigmoid_schemes_push_every_class_down_on_unmatched_and_dn_negatives(name):
    g = grad_rows(name)
    assert (g[1] > 0).all() and (g[2] > 0).all()  # positive gradient: descent lowers every class logit


def test_tao_patch_keeps_background_but_still_drops_denoising_negatives():
    g = grad_rows("focal_tao_patch")
    assert (g[1] > 0).all()
    assert torch.count_nonzero(g[2]) == 0


def test_detr_ce_pushes_unmatched_queries_to_no_object():
    g = grad_rows("detr_ce")
    for row in (1, 2):
        assert (g[row, :C] > 0).all() and g[row, C] < 0


@pytest.mark.parametrize("name", ["vfl", "vfl_clamped"])
def test_varifocal_defaults_are_rt_detrs_and_its_options_stay_visible(name):
    scheme = build_scheme(name, C)
    assert (scheme.alpha, scheme.gamma, scheme.cost_alpha, scheme.loss_weight) == (0.75, 2.0, 0.25, 2.0)
    assert build_scheme(name, C, alpha=0.5).cost_alpha == 0.25  # the matching cost keeps the focal arms' alpha
    assert {"loss_weight", "alpha", "gamma", "cost_alpha"} <= set(inspect.signature(REGISTRY[name].__init__).parameters)


def test_vfl_clamped_gives_the_last_class_no_negative_gradient():
    g = grad_rows("vfl_clamped")
    assert (g[1, : C - 1] > 0).all()
    assert g[1, C - 1] == 0


def mmdet_sigmoid_focal(pred, target, alpha=0.25, gamma=2.0, avg_factor=1.0):
    """mmdet 2.x py_sigmoid_focal_loss after FocalLoss's one-hot over num_classes + 1 (non-negative labels)."""
    num_classes = pred.size(1)
    target = F.one_hot(target, num_classes=num_classes + 1)[:, :num_classes].type_as(pred)
    pred_sigmoid = pred.sigmoid()
    pt = (1 - pred_sigmoid) * target + pred_sigmoid * (1 - target)
    focal_weight = (alpha * target + (1 - alpha) * (1 - target)) * pt.pow(gamma)
    loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight
    return loss.sum() / avg_factor


def test_focal_onehot_equals_mmdet():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(50, C, generator=gen) * 3
    labels = torch.randint(0, C + 1, (50,), generator=gen)
    ours = build_scheme("focal_onehot", C, loss_weight=1.0).loss(logits, labels, avg_factor=7.0)
    assert ours.item() == pytest.approx(mmdet_sigmoid_focal(logits, labels, avg_factor=7.0).item(), rel=1e-6)
    # focal_filtered is the same formula over foreground rows only (TAO's valid_mask)
    keep = labels < C
    filtered = build_scheme("focal_filtered", C, loss_weight=1.0).loss(logits, labels, avg_factor=7.0)
    assert filtered.item() == pytest.approx(mmdet_sigmoid_focal(logits[keep], labels[keep], avg_factor=7.0).item())


def test_hungarian_equals_brute_force():
    gen = torch.Generator().manual_seed(2)
    for q, m in [(3, 3), (5, 3), (6, 2), (4, 4)]:
        cost = torch.rand(q, m, generator=gen)
        rows, cols = hungarian(cost)
        best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(q), m))
        assert cost[rows, cols].sum().item() == pytest.approx(best.item())
        assert len(set(rows.tolist())) == m


def test_hungarian_survives_non_finite_costs():
    cost = torch.tensor([[float("nan"), 1.0], [2.0, float("inf")], [0.5, 0.1]])
    rows, cols = hungarian(cost)
    assert len(rows) == 2 and torch.isfinite(cost[rows, cols]).all()


def fake_output(scheme, batch=2, queries=12, layers=2, dn=True, seed=0) -> ModelOutput:
    gen = torch.Generator().manual_seed(seed)

    def layer(q):
        anchor = geometry.box_to_anchor(random_boxes(batch * q, gen)).view(batch, q, 11)
        return LayerOutput(
            cls=torch.randn(batch, q, scheme.num_logits, generator=gen).requires_grad_(True),
            anchor=anchor.requires_grad_(True),
            quality=torch.randn(batch, q, 2, generator=gen).requires_grad_(True),
        )

    denoising = None
    if dn:
        q_dn = 6
        denoising = Denoising(
            layers=[layer(q_dn) for _ in range(layers)],
            gt_index=torch.tensor([[0, 1, 0, 1, -1, -1], [-1] * 6]),
            positive=torch.tensor([[True, True, False, False, False, False], [False] * 6]),
            valid=torch.tensor([[True, True, True, True, False, False], [False] * 6]),
            group=torch.tensor([[0, 0, 0, 0, 1, 1], [0] * 6]),
        )
    return ModelOutput(
        layers=[layer(queries) for _ in range(layers)],
        denoising=denoising,
        instance_feature=torch.zeros(batch, queries, 8),
        temporal=torch.zeros(batch, queries, dtype=torch.bool),
        anchor_slot=torch.arange(queries).expand(batch, queries),
    )


def random_boxes(n, gen):
    boxes = torch.zeros(n, 10)
    boxes[:, :2] = torch.rand(n, 2, generator=gen) * 8 - 4
    boxes[:, 3:6] = torch.rand(n, 3, generator=gen) * 0.8 + 0.4
    boxes[:, 2] = boxes[:, 5] / 2
    boxes[:, 6] = torch.rand(n, generator=gen) * 2 * math.pi - math.pi
    return boxes


GT_BOXES = [random_boxes(2, torch.Generator().manual_seed(5)), torch.zeros(0, 10)]  # slot 1: no objects
GT_LABELS = [torch.tensor([0, C - 1]), torch.zeros(0, dtype=torch.long)]


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("case", ["mixed", "empty", "background_only"])
def test_every_scheme_gives_finite_loss_and_gradients(name, case):
    scheme = build_scheme(name, C)
    out = fake_output(scheme, dn=case != "empty")
    boxes, labels = (GT_BOXES, GT_LABELS) if case == "mixed" else ([torch.zeros(0, 10)] * 2, [GT_LABELS[1]] * 2)
    if case == "background_only":
        out.denoising.positive[:] = False  # only denoising negatives
    result = Sparse4DCriterion(scheme)(out, boxes, labels)
    result.total.backward()
    assert torch.isfinite(result.total)
    for layer in out.layers:
        assert torch.isfinite(layer.cls.grad).all() and torch.isfinite(layer.anchor.grad).all()


@pytest.mark.parametrize(("name", "unmatched_zero"), [("focal_filtered", True), ("focal_onehot", False)])
def test_criterion_routes_the_unmatched_gradient(name, unmatched_zero):
    scheme = build_scheme(name, C)
    out = fake_output(scheme, dn=False)
    result = Sparse4DCriterion(scheme)(out, GT_BOXES, GT_LABELS)
    result.total.backward()
    final = out.layers[-1]
    matched = result.assignment.positive
    assert matched.sum() == 2 and matched[0].sum() == 2
    assert (final.cls.grad[matched].abs().sum(-1) > 0).all()
    assert (final.anchor.grad[matched].abs().sum(-1) > 0).all()
    assert torch.count_nonzero(final.anchor.grad[~matched]) == 0  # no box loss without a GT
    unmatched_grad = final.cls.grad[~matched]
    assert (torch.count_nonzero(unmatched_grad) == 0) == unmatched_zero


def test_denoising_targets():
    scheme = build_scheme("focal_onehot", C)
    out = fake_output(scheme)
    target = Sparse4DCriterion.denoising_assignment(out.denoising, GT_BOXES, GT_LABELS, C)
    assert target.labels[0, :4].tolist() == [0, C - 1, -1, -1]
    assert target.positive[0].tolist() == [True, True, False, False, False, False]
    assert torch.equal(target.box_target[0, 1], GT_BOXES[0][1])
    assert not target.valid[1].any()


def test_paq_positive_count_formula():
    inf = -math.inf
    top = torch.tensor([[0.9, 0.8, 0.6, 0.3], [0.2, 0.1, 0.05, 0.0], [0.5, -0.2, inf, inf], [-0.3, -0.4, -0.5, -0.6]])
    # ceil(2.6) = 3; ceil(0.35) = 1; ceil(0.3) = 1; max(ceil(-1.8), 1) = 1
    assert positive_counts(top).tolist() == [3, 1, 1, 1]
    assert positive_counts(torch.tensor([[0.9, 0.9, inf, inf]])).tolist() == [2]  # capped by the candidates


def test_quality_aware_assignment_by_hand():
    # 5 queries, 2 GTs. GT 0 is overlapped by queries 0, 1, 2; GT 1 by no query (falls back to Hungarian: query 4).
    iou = torch.tensor([[0.9, 0.0], [0.8, 0.0], [0.7, 0.0], [0.0, 0.0], [0.0, 0.0]])
    conf = torch.tensor([[0.5, 0.1], [0.1, 0.1], [0.0, 0.1], [0.9, 0.1], [0.2, 0.3]])
    query, gt = quality_aware_assign(iou, conf, hungarian_query=torch.tensor([0, 4]), lam=0.4, topk=4)
    # qualities for GT 0: 0.7, 0.76, 0.7 -> sum 2.16 -> 3 positives
    assert sorted(zip(query.tolist(), gt.tolist(), strict=True)) == [(0, 0), (1, 0), (2, 0), (4, 1)]


def test_diversity_loss_is_zero_for_orthogonal_patterns():
    gen = PatternQueries(num_anchor=10, embed_dims=8, feature_channels=4, num_patterns=4, hidden=8)
    with torch.no_grad():
        gen.patterns.copy_(torch.eye(8)[:4] * 3.0)
    assert gen.diversity_loss().item() == pytest.approx(0.0, abs=1e-7)
    with torch.no_grad():
        gen.patterns.copy_(torch.ones(4, 8))
    assert gen.diversity_loss().item() == pytest.approx(0.2)


def test_pattern_queries_are_convex_mixtures():
    gen = PatternQueries(num_anchor=10, embed_dims=8, feature_channels=4, num_patterns=3, hidden=8)
    maps = [torch.randn(2, 3, 4, 5, 6), torch.randn(2, 3, 4, 3, 3)]
    queries = gen(maps, torch.zeros(10, 8))
    assert queries.shape == (2, 10, 8)
    # Every query lies in the convex hull of the patterns: solve for the weights and check they sum to 1.
    weights = torch.linalg.lstsq(gen.patterns.detach().T, queries[0].detach().T).solution.T
    assert torch.allclose(weights.sum(-1), torch.ones(10), atol=1e-4) and (weights > -1e-4).all()


def test_audit_shows_the_silent_losses(tmp_path):
    from experiments.audit import audit, render

    filtered = audit("focal_filtered", cache_dir=tmp_path)
    assert filtered["unmatched"].queries > 0 and filtered["unmatched"].with_gradient == 0.0
    assert filtered["dn_negative"].with_gradient == 0.0 and filtered["matched"].with_gradient == 1.0
    clamped = audit("vfl_clamped", cache_dir=tmp_path)
    assert clamped["unmatched"].per_class[-1] == 0.0 and min(clamped["unmatched"].per_class[:-1]) == 1.0
    assert "unmatched" in render("vfl_clamped", clamped)
    # cls_threshold_to_reg (0.05 in both profiles): at the prior's 0.01 no matched query gets a box loss yet, while
    # every denoising positive does (the threshold is not applied to them).
    for semantics in ("tao", "upstream"):
        onehot = audit("focal_onehot", cache_dir=tmp_path, semantics=semantics)
        assert onehot["matched"].with_box_gradient == 0.0 and onehot["dn_positive"].with_box_gradient == 1.0
        assert onehot["unmatched"].with_gradient == 1.0 and onehot["dn_negative"].with_box_gradient == 0.0
