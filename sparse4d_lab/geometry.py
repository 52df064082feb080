"""Boxes, anchors, cameras and rotated IoU: the one place where the project's conventions live.

World frame: right-handed, metres, z up, floor at z = 0.
A box is ``[x, y, z, l, w, h, yaw, vx, vy, vz]``: centre, length along the heading, width, height, yaw about +z
in [-pi, pi), velocity in m/s. The model's anchor is ``[x, y, z, log l, log w, log h, sin yaw, cos yaw, vx, vy, vz]``.
A camera is a 4x4 ``projection_mat`` (intrinsics @ extrinsics, world -> image); pixel = (u / z, v / z).
Everything is torch, batched over leading dimensions, and differentiable where a loss uses it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Box layout.
X, Y, Z, L, W, H, YAW, VX, VY, VZ = range(10)
BOX_DIM = 10
# Anchor layout.
LOG_L, LOG_W, LOG_H, SIN_YAW, COS_YAW = 3, 4, 5, 6, 7
ANCHOR_VEL = slice(8, 11)
ANCHOR_DIM = 11

MIN_DEPTH = 1e-5  # points closer to the image plane than this count as behind the camera


def wrap_angle(angle: Tensor) -> Tensor:
    """Wrap radians to [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def box_to_anchor(boxes: Tensor) -> Tensor:
    """``[..., 10]`` boxes -> ``[..., 11]`` anchors (log sizes, sin/cos yaw)."""
    return torch.cat(
        [
            boxes[..., X : Z + 1],
            boxes[..., L : H + 1].clamp_min(1e-6).log(),
            boxes[..., YAW : YAW + 1].sin(),
            boxes[..., YAW : YAW + 1].cos(),
            boxes[..., VX : VZ + 1],
        ],
        dim=-1,
    )


def anchor_to_box(anchors: Tensor) -> Tensor:
    """``[..., 11]`` anchors -> ``[..., 10]`` boxes; yaw from atan2 so sin/cos need not be normalised."""
    yaw = torch.atan2(anchors[..., SIN_YAW], anchors[..., COS_YAW])
    return torch.cat(
        [
            anchors[..., X : Z + 1],
            anchors[..., LOG_L : LOG_H + 1].exp(),
            wrap_angle(yaw).unsqueeze(-1),
            anchors[..., ANCHOR_VEL],
        ],
        dim=-1,
    )


def rotation_z(yaw: Tensor) -> Tensor:
    """``[...]`` yaw -> ``[..., 3, 3]`` rotation about +z."""
    c, s = yaw.cos(), yaw.sin()
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).unflatten(-1, (3, 3))


# Unit-cube corner signs: bottom face (z = -1) counter-clockwise seen from above, then the top face.
_CORNER_SIGNS = torch.tensor(
    [[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]],
    dtype=torch.float64,
)


def box_points(boxes: Tensor, offsets: Tensor) -> Tensor:
    """World coordinates of points given in box units (``offsets [..., P, 3]``, +-0.5 on the faces).

    ``boxes [..., 10]`` -> ``[..., P, 3]``. Corners, key points and renderer samples all go through here.
    """
    local = offsets.to(boxes) * boxes[..., None, L : H + 1]
    return local @ rotation_z(boxes[..., YAW]).transpose(-1, -2) + boxes[..., None, X : Z + 1]


def box_corners(boxes: Tensor) -> Tensor:
    """``[..., 10]`` boxes -> ``[..., 8, 3]`` corners (bottom face first, counter-clockwise from above)."""
    return box_points(boxes, 0.5 * _CORNER_SIGNS)


def bev_corners(boxes: Tensor) -> Tensor:
    """``[..., 10]`` boxes -> ``[..., 4, 2]`` footprint corners, counter-clockwise."""
    return box_corners(boxes)[..., :4, :2]


def project_points(points: Tensor, projection_mat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Project world points into cameras.

    ``points [..., P, 3]`` and ``projection_mat [..., N, 4, 4]`` (same leading dims) ->
    pixels ``[..., N, P, 2]``, depth ``[..., N, P]`` and ``in_front [..., N, P]`` (depth > MIN_DEPTH).
    Pixels of points behind a camera are meaningless; use ``in_front`` to mask them.
    """
    homo = torch.cat([points, torch.ones_like(points[..., :1])], dim=-1)
    cam = torch.einsum("...nij,...pj->...npi", projection_mat.to(points), homo)
    depth = cam[..., 2]
    in_front = depth > MIN_DEPTH
    pixels = cam[..., :2] / depth.clamp_min(MIN_DEPTH).unsqueeze(-1)
    return pixels, depth, in_front


def inside_image(pixels: Tensor, in_front: Tensor, image_wh: Tensor) -> Tensor:
    """Mask of projected points that land inside their image; ``image_wh [..., N, 2]`` as (W, H)."""
    wh = image_wh.to(pixels).unsqueeze(-2)
    return in_front & (pixels >= 0).all(-1) & (pixels < wh).all(-1)


def _cross2(a: Tensor, b: Tensor) -> Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _points_in_convex(points: Tensor, poly: Tensor) -> Tensor:
    """``points [..., P, 2]`` inside the counter-clockwise ``poly [..., K, 2]`` (boundary counts) -> ``[..., P]``."""
    edges = poly.roll(-1, dims=-2) - poly
    rel = points.unsqueeze(-2) - poly.unsqueeze(-3)  # [..., P, K, 2]
    return (_cross2(edges.unsqueeze(-3), rel) >= -1e-9).all(-1)


def _quad_intersection_area(a: Tensor, b: Tensor) -> Tensor:
    """Area of the intersection of convex counter-clockwise quadrilaterals ``a, b [..., 4, 2]``.

    The intersection polygon's vertices are among: corners of a inside b, corners of b inside a, and the
    16 edge-edge crossings. Valid candidates are sorted by angle around their mean and fed to the shoelace
    formula; invalid slots repeat the first valid vertex, which adds zero area. Fully vectorised.
    """
    a_in_b = _points_in_convex(a, b)
    b_in_a = _points_in_convex(b, a)
    # Edge-edge crossings: a_i + t (a_{i+1} - a_i) = b_j + u (b_{j+1} - b_j), 0 <= t, u <= 1.
    da = (a.roll(-1, dims=-2) - a).unsqueeze(-2)  # [..., 4, 1, 2]
    db = (b.roll(-1, dims=-2) - b).unsqueeze(-3)  # [..., 1, 4, 2]
    ab = b.unsqueeze(-3) - a.unsqueeze(-2)  # [..., 4, 4, 2]
    denom = _cross2(da, db)
    parallel = denom.abs() < 1e-12
    safe = torch.where(parallel, torch.ones_like(denom), denom)
    t = _cross2(ab, db) / safe
    u = _cross2(ab, da) / safe
    cross_ok = ~parallel & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    crossings = a.unsqueeze(-2) + t.unsqueeze(-1) * da  # [..., 4, 4, 2]

    candidates = torch.cat([a, b, crossings.flatten(-3, -2)], dim=-2)  # [..., 24, 2]
    valid = torch.cat([a_in_b, b_in_a, cross_ok.flatten(-2)], dim=-1)  # [..., 24]
    count = valid.sum(-1, keepdim=True).clamp_min(1)
    w = valid.to(candidates).unsqueeze(-1)
    centre = (candidates * w).sum(-2) / count.to(candidates)
    rel = candidates - centre.unsqueeze(-2)
    angle = torch.atan2(rel[..., 1], rel[..., 0]).detach()
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))  # invalid slots sort last
    order = angle.argsort(dim=-1)
    ordered = rel.gather(-2, order.unsqueeze(-1).expand_as(rel))
    ordered_valid = valid.gather(-1, order)
    first = ordered[..., :1, :].expand_as(ordered)
    ordered = torch.where(ordered_valid.unsqueeze(-1), ordered, first)
    area = 0.5 * _cross2(ordered, ordered.roll(-1, dims=-2)).sum(-1)
    return torch.where(valid.sum(-1) >= 3, area.clamp_min(0), torch.zeros_like(area))


def _pairwise(a: Tensor, b: Tensor, aligned: bool) -> tuple[Tensor, Tensor]:
    if aligned:
        return torch.broadcast_tensors(a, b)
    return a.unsqueeze(-2), b.unsqueeze(-3)


def bev_iou(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    """Rotated bird's-eye-view IoU. ``[N, 10], [M, 10] -> [N, M]``, or ``[..., 10] x2 -> [...]`` if aligned."""
    a, b = _pairwise(boxes_a, boxes_b, aligned)
    inter = _quad_intersection_area(*torch.broadcast_tensors(bev_corners(a), bev_corners(b)))
    area_a = a[..., L] * a[..., W]
    area_b = b[..., L] * b[..., W]
    return inter / (area_a + area_b - inter).clamp_min(1e-9)


def iou_3d(boxes_a: Tensor, boxes_b: Tensor, aligned: bool = False) -> Tensor:
    """Rotated 3D IoU (yaw-only boxes): BEV intersection times height overlap over the union volume."""
    a, b = _pairwise(boxes_a, boxes_b, aligned)
    inter_bev = _quad_intersection_area(*torch.broadcast_tensors(bev_corners(a), bev_corners(b)))
    top = torch.minimum(a[..., Z] + 0.5 * a[..., H], b[..., Z] + 0.5 * b[..., H])
    bottom = torch.maximum(a[..., Z] - 0.5 * a[..., H], b[..., Z] - 0.5 * b[..., H])
    inter = inter_bev * (top - bottom).clamp_min(0)
    vol_a = a[..., L] * a[..., W] * a[..., H]
    vol_b = b[..., L] * b[..., W] * b[..., H]
    return inter / (vol_a + vol_b - inter).clamp_min(1e-9)


def look_at_extrinsic(position: Tensor, target: Tensor) -> Tensor:
    """World -> camera 4x4 for a camera at ``position`` looking at ``target``.

    OpenCV camera axes: x right, y down, z ahead.
    """
    forward = target - position
    forward = forward / forward.norm()
    up = torch.tensor([0.0, 0.0, 1.0], dtype=position.dtype)
    right = torch.linalg.cross(forward, up)
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    rot = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    ext = torch.eye(4, dtype=position.dtype)
    ext[:3, :3] = rot
    ext[:3, 3] = -rot @ position
    return ext


def intrinsic_matrix(fx: float, fy: float, cx: float, cy: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """4x4 pinhole intrinsics, so that ``projection_mat = intrinsic @ extrinsic``."""
    k = torch.eye(4, dtype=dtype)
    k[0, 0], k[1, 1], k[0, 2], k[1, 2] = fx, fy, cx, cy
    return k
