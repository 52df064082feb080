import math

import pytest
import torch

from sparse4d_lab import geometry as g


def random_boxes(n: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    boxes = torch.zeros(n, 10, dtype=torch.float64)
    boxes[:, :2] = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 4 - 2
    boxes[:, 2] = torch.rand(n, generator=gen, dtype=torch.float64) + 0.5
    boxes[:, 3:6] = torch.rand(n, 3, generator=gen, dtype=torch.float64) * 2.5 + 0.3
    boxes[:, 6] = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi - math.pi
    boxes[:, 7:] = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return boxes


def test_wrap_angle_range_and_identity():
    a = torch.linspace(-20, 20, 1001, dtype=torch.float64)
    w = g.wrap_angle(a)
    assert (w >= -math.pi).all() and (w < math.pi).all()
    assert torch.allclose(torch.sin(w), torch.sin(a)) and torch.allclose(torch.cos(w), torch.cos(a))
    assert g.wrap_angle(torch.tensor(math.pi)).item() == pytest.approx(-math.pi)


def test_box_anchor_round_trip():
    boxes = random_boxes(64)
    anchors = g.box_to_anchor(boxes)
    assert anchors.shape == (64, g.ANCHOR_DIM)
    assert torch.allclose(g.anchor_to_box(anchors), boxes, atol=1e-12)
    # yaw decodes from unnormalised sin/cos too
    scaled = anchors.clone()
    scaled[:, g.SIN_YAW : g.COS_YAW + 1] *= 3.0
    assert torch.allclose(g.anchor_to_box(scaled)[:, g.YAW], boxes[:, g.YAW], atol=1e-12)


def test_corners_lie_on_box_faces():
    box = torch.tensor([[1.0, 2.0, 0.5, 4.0, 2.0, 1.0, math.pi / 2, 0, 0, 0]], dtype=torch.float64)
    corners = g.box_corners(box)[0]
    # yaw pi/2: length runs along +y
    assert torch.allclose(corners[:, 1].max(), torch.tensor(4.0, dtype=torch.float64))
    assert torch.allclose(corners[:, 0].max(), torch.tensor(2.0, dtype=torch.float64))
    assert torch.allclose(corners[:4, 2], torch.zeros(4, dtype=torch.float64))
    bev = g.bev_corners(box)[0]
    signed_area = 0.5 * (bev[:, 0] * bev.roll(-1, 0)[:, 1] - bev.roll(-1, 0)[:, 0] * bev[:, 1]).sum()
    assert signed_area.item() == pytest.approx(8.0)  # counter-clockwise, l * w


def test_projection_of_known_points():
    cam_pos = torch.tensor([0.0, -5.0, 2.0], dtype=torch.float64)
    ext = g.look_at_extrinsic(cam_pos, torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64))
    k = g.intrinsic_matrix(100.0, 100.0, 80.0, 40.0)
    proj = (k @ ext).unsqueeze(0)
    points = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 2.0], [0.0, 0.0, 1.0], [0.0, -10.0, 2.0]], dtype=torch.float64)
    pix, depth, in_front = g.project_points(points, proj)
    assert torch.allclose(pix[0, 0], torch.tensor([80.0, 40.0], dtype=torch.float64))
    assert torch.allclose(pix[0, 1], torch.tensor([100.0, 40.0], dtype=torch.float64))  # +x is image right
    assert torch.allclose(pix[0, 2], torch.tensor([80.0, 60.0], dtype=torch.float64))  # down is image down
    assert torch.allclose(depth[0, :3], torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64))
    assert in_front[0].tolist() == [True, True, True, False]
    wh = torch.tensor([[160.0, 80.0]])
    assert g.inside_image(pix, in_front, wh)[0].tolist() == [True, True, True, False]


def test_iou_identity_disjoint_symmetry():
    boxes = random_boxes(32, seed=1)
    assert torch.allclose(g.bev_iou(boxes, boxes, aligned=True), torch.ones(32, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(g.iou_3d(boxes, boxes, aligned=True), torch.ones(32, dtype=torch.float64), atol=1e-9)
    far = boxes.clone()
    far[:, 0] += 100
    assert g.bev_iou(boxes, far).abs().max().item() == 0.0
    iou = g.bev_iou(boxes, boxes)
    assert torch.allclose(iou, iou.T, atol=1e-9)
    iou3 = g.iou_3d(boxes, boxes)
    assert torch.allclose(iou3, iou3.T, atol=1e-9)
    assert ((iou >= 0) & (iou <= 1 + 1e-9)).all()


def test_iou_agrees_with_monte_carlo():
    a, b = random_boxes(40, seed=2), random_boxes(40, seed=3)
    b[:, :3] = a[:, :3] + (b[:, :3] - a[:, :3]) * 0.3  # keep pairs overlapping often
    gen = torch.Generator().manual_seed(4)
    n = 200_000
    for i in range(a.shape[0]):
        lo = torch.minimum(g.box_corners(a[i]).amin(0), g.box_corners(b[i]).amin(0))
        hi = torch.maximum(g.box_corners(a[i]).amax(0), g.box_corners(b[i]).amax(0))
        pts = lo + (hi - lo) * torch.rand(n, 3, generator=gen, dtype=torch.float64)

        def inside(box, pts=pts):
            local = (pts - box[:3]) @ g.rotation_z(box[6])
            return (local.abs() <= box[3:6] / 2).all(-1)

        ia, ib = inside(a[i]), inside(b[i])
        mc3 = (ia & ib).sum() / (ia | ib).sum().clamp_min(1)
        assert g.iou_3d(a[i], b[i], aligned=True).item() == pytest.approx(mc3.item(), abs=1e-2)
        # BEV: the same test on the floor-plane footprint
        flat_a, flat_b = a[i].clone(), b[i].clone()
        flat_a[2], flat_b[2], flat_a[5], flat_b[5] = 0.0, 0.0, 1.0, 1.0
        pts2 = pts.clone()
        pts2[:, 2] = 0.0
        ia2, ib2 = inside(flat_a, pts2), inside(flat_b, pts2)
        mc2 = (ia2 & ib2).sum() / (ia2 | ib2).sum().clamp_min(1)
        assert g.bev_iou(a[i], b[i], aligned=True).item() == pytest.approx(mc2.item(), abs=1e-2)


def test_iou_is_differentiable():
    a = random_boxes(8, seed=5).requires_grad_(True)
    b = random_boxes(8, seed=6)
    b[:, :2] = a[:, :2].detach() + 0.3
    g.iou_3d(a, b, aligned=True).sum().backward()
    assert torch.isfinite(a.grad).all()
    assert a.grad[:, :2].abs().sum() > 0
