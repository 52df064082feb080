"""CPU ray caster for warehouse scenes: floor, walls and cuboid-part bodies with a depth and an instance buffer.

Static geometry (floor, walls, distractors) is cast once per camera and scene, targets once per frame; every body
casts only the rays inside its projected bounding rectangle against its own parts, and the nearest hit is kept.
The instance buffer gives each target's exact visible fraction: visible pixels over the pixels it would cover
with nothing in front of it (pixels outside the image count as neither).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .. import geometry
from .appearance import PLAIN, SPECKLE, STRIPES_H, STRIPES_V
from .scene import Body, Scene

AMBIENT, DIFFUSE = 0.45, 0.55
BACKGROUND_ID = -1


@dataclass
class Canvas:
    """One camera image under construction: colour ``[H, W, 3]``, ray distance and instance id ``[H, W]``."""

    colour: np.ndarray
    distance: np.ndarray
    instance: np.ndarray

    def copy(self) -> Canvas:
        return Canvas(self.colour.copy(), self.distance.copy(), self.instance.copy())


@dataclass
class Camera:
    """Unit ray directions ``[H, W, 3]`` from ``origin``; ``forward_cos`` turns ray distance into image-plane depth."""

    origin: np.ndarray
    rays: np.ndarray
    forward_cos: np.ndarray
    projection: np.ndarray


def make_camera(intrinsic: np.ndarray, extrinsic: np.ndarray, image_wh: tuple[int, int]) -> Camera:
    w, h = image_wh
    rot, trans = extrinsic[:3, :3], extrinsic[:3, 3]
    origin = -rot.T @ trans
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)  # pixel centres
    k = intrinsic[:3, :3]
    cam = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], axis=-1)
    norm = np.linalg.norm(cam, axis=-1, keepdims=True)
    rays = (cam / norm) @ rot  # camera -> world: rot.T @ d, written for row vectors
    return Camera(origin, rays, 1.0 / norm[..., 0], intrinsic @ extrinsic)


def _rotation(yaw: np.ndarray) -> np.ndarray:
    return geometry.rotation_z(torch.from_numpy(np.array(yaw, dtype=float))).numpy()


def box_points(box: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """World coordinates of ``offsets [P, 3]`` given in box units."""
    return geometry.box_points(torch.from_numpy(box), torch.from_numpy(offsets)).numpy()


def part_boxes(box: np.ndarray, body: Body) -> tuple[np.ndarray, np.ndarray]:
    """World centres ``[P, 3]`` and half sizes ``[P, 3]`` of a body's parts placed at ``box``."""
    return box_points(box, body.parts[:, :3]), body.parts[:, 3:6] * box[3:6] / 2


def cast_cuboids(
    origin: np.ndarray, rays: np.ndarray, centres: np.ndarray, halves: np.ndarray, yaw: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Slab test of ``rays [R, 3]`` against yaw-rotated cuboids ``[K]``.

    Returns, per ray, the nearest distance (inf on a miss), the part index hit, the world normal ``[R, 3]`` and
    the hit point in the part's local frame ``[R, 3]``.
    """
    yaw = np.broadcast_to(np.asarray(yaw, dtype=float), (len(centres),))
    rot = _rotation(yaw)  # [K, 3, 3]
    o_local = np.einsum("kji,kj->ki", rot, origin[None] - centres)  # R^T (o - c)
    d_local = (rays @ rot.transpose(1, 0, 2).reshape(3, -1)).reshape(len(rays), -1, 3)  # [R, K, 3], one product
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(d_local) < 1e-12, 1e-12, d_local)
        t1 = (-halves[None] - o_local[None]) * inv
        t2 = (halves[None] - o_local[None]) * inv
    t_near, t_far = np.minimum(t1, t2), np.maximum(t1, t2)
    # Explicit three-way max/min: numpy reductions over a length-3 axis are several times slower.
    t_in = np.maximum(np.maximum(t_near[..., 0], t_near[..., 1]), t_near[..., 2])
    t_out = np.minimum(np.minimum(t_far[..., 0], t_far[..., 1]), t_far[..., 2])
    hit = (t_in <= t_out) & (t_in > 1e-6)
    t_hit = np.where(hit, t_in, np.inf)
    best = t_hit.argmin(-1)
    r = np.arange(len(rays))
    distance = t_hit[r, best]
    axis = t_near[r, best].argmax(-1)
    d_best = d_local[r, best]
    normal = rot[best, :, axis] * -np.sign(d_best[r, axis])[:, None]  # the hit face's local axis, in world
    point_local = o_local[best] + np.where(np.isfinite(distance), distance, 0.0)[:, None] * d_best
    return distance, best, normal, point_local


def _pattern(kind: np.ndarray, point_local: np.ndarray) -> np.ndarray:
    """Multiplicative texture per hit: stripes and speckle break up flat colours the way labels and slats do."""
    out = np.ones(len(kind))
    z, xy = point_local[:, 2], point_local[:, 0] + point_local[:, 1]
    out = np.where(kind == STRIPES_H, 1.0 + 0.12 * np.sign(np.sin(z * 40.0)), out)
    out = np.where(kind == STRIPES_V, 1.0 + 0.12 * np.sign(np.sin(xy * 30.0)), out)
    speckle = np.sin(point_local @ np.array([91.7, 47.3, 63.1])) * 0.5 + 0.5
    out = np.where(kind == SPECKLE, 0.85 + 0.3 * speckle, out)
    return np.where(kind == PLAIN, 1.0, out)


def _shade(colours: np.ndarray, normal: np.ndarray, light: np.ndarray) -> np.ndarray:
    lambert = np.clip(normal @ light, 0.0, None)
    return colours * (AMBIENT + DIFFUSE * lambert)[:, None]


def shade_body(
    origin: np.ndarray, rays: np.ndarray, box: np.ndarray, body: Body, light: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cast ``rays [R, 3]`` at a body placed at ``box``: distance ``[R]`` (inf on a miss) and rgb ``[R, 3]``."""
    centres, halves = part_boxes(box, body)
    distance, part, normal, local = cast_cuboids(origin, rays, centres, halves, box[geometry.YAW])
    texture = _pattern(body.patterns[part], local)[:, None]
    return distance, _shade(body.colours[part], normal, light) * texture


def _room(scene: Scene, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Floor (tiled concrete with grout lines) and walls (two-tone, dark above the wall height)."""
    rays = cam.rays.reshape(-1, 3)
    o = cam.origin
    half = np.asarray(scene.room_size) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[:, 2] < -1e-9, -o[2] / rays[:, 2], np.inf)
        t_walls = []
        for axis in (0, 1):
            d = rays[:, axis]
            wall = np.where(d > 0, half[axis], -half[axis])
            t_walls.append(np.where(np.abs(d) > 1e-9, (wall - o[axis]) / d, np.inf))
    t_wall = np.minimum(*t_walls)
    wall_axis = np.where(t_walls[0] <= t_walls[1], 0, 1)
    distance = np.minimum(t_floor, t_wall)
    point = o + np.where(np.isfinite(distance), distance, 0.0)[:, None] * rays

    ix, iy = np.floor(point[:, 0]), np.floor(point[:, 1])
    tile = 0.55 + 0.08 * (np.sin(ix * 12.9898 + iy * 78.233) * 43758.5453 % 1.0)
    fx, fy = point[:, 0] - ix, point[:, 1] - iy
    grout = (fx < 0.03) | (fy < 0.03)
    floor = np.where(grout, 0.35, tile)[:, None] * np.array([0.95, 0.93, 0.88]) * scene.floor_tint
    lane = (np.abs(point[:, 1]) < 0.06) & (np.abs(point[:, 0]) < half[0] - 1.0)  # a painted lane line
    floor = np.where(lane[:, None], np.array([0.85, 0.75, 0.2]), floor)
    floor = _shade(floor, np.tile([0.0, 0.0, 1.0], (len(rays), 1)), scene.light)

    z = point[:, 2]
    wall = np.where((z < 1.2)[:, None], np.array([0.45, 0.5, 0.55]), np.array([0.8, 0.8, 0.76]))
    wall = np.where((z > scene.wall_height)[:, None], np.array([0.2, 0.2, 0.22]), wall)
    normal = np.zeros((len(rays), 3))
    normal[np.arange(len(rays)), wall_axis] = -np.sign(rays[np.arange(len(rays)), wall_axis])
    wall = _shade(wall, normal, scene.light)
    colour = np.where((t_floor <= t_wall)[:, None], floor, wall)
    return distance, colour


def render_background(scene: Scene, cam: Camera) -> Canvas:
    """Everything that does not move: cast once per camera and reused for every frame."""
    w, h = scene.image_wh
    distance, colour = _room(scene, cam)
    instance = np.full(h * w, BACKGROUND_ID, dtype=np.int64)
    canvas = Canvas(colour.reshape(h, w, 3), distance.reshape(h, w), instance.reshape(h, w))
    if scene.distractors:
        boxes = np.stack([d.box for d in scene.distractors])
        corners = bounding_corners(boxes, scene.distractors)
        for box, body, box_corners in zip(boxes, scene.distractors, corners, strict=True):
            draw_body(canvas, cam, box, body, box_corners, scene.light, BACKGROUND_ID)
    return canvas


def _screen_rect(corners: np.ndarray, cam: Camera, image_wh: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """Pixel rectangle ``(x0, y0, x1, y1)`` that contains a box's projection (its ``corners [8, 3]``), or None if
    it is off-screen."""
    cam_pts = corners @ cam.projection[:3, :3].T + cam.projection[:3, 3]
    w, h = image_wh
    if (cam_pts[:, 2] <= 1e-3).all():
        return None
    if (cam_pts[:, 2] <= 1e-3).any():  # straddles the camera plane: fall back to the whole image
        return 0, 0, w, h
    uv = cam_pts[:, :2] / cam_pts[:, 2:3]
    x0, y0 = np.floor(uv.min(0)).astype(int)
    x1, y1 = np.ceil(uv.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def bounding_corners(boxes: np.ndarray, bodies: Sequence[Body]) -> np.ndarray:
    """``[O, 8, 3]`` corners of each box grown to hold all of its body's parts (a rack's shelves overhang its box;
    targets fit theirs exactly), computed at once: per box, torch's overhead shows in the render time."""
    reach = np.array([np.maximum(np.abs(b.parts[:, :3]) + b.parts[:, 3:6] / 2, 0.5).max(0) for b in bodies])
    grown = boxes.copy()
    grown[:, geometry.L : geometry.H + 1] *= 2 * reach.reshape(-1, 3)
    return geometry.box_corners(torch.from_numpy(grown)).numpy()


def draw_body(
    canvas: Canvas, cam: Camera, box: np.ndarray, body: Body, corners: np.ndarray, light: np.ndarray, instance: int
) -> int:
    """Cast the rays of the body's screen rectangle only and keep its hits nearer than what the canvas holds;
    returns how many pixels it would cover with nothing in front of it."""
    rect = _screen_rect(corners, cam, canvas.distance.shape[::-1])
    if rect is None:
        return 0
    x0, y0, x1, y1 = rect
    rays = cam.rays[y0:y1, x0:x1].reshape(-1, 3)
    distance, rgb = shade_body(cam.origin, rays, box, body, light)
    hit = np.isfinite(distance)
    window = (slice(y0, y1), slice(x0, x1))
    front = (hit & (distance < canvas.distance[window].reshape(-1))).reshape(y1 - y0, x1 - x0)
    canvas.distance[window][front] = distance.reshape(front.shape)[front]
    canvas.instance[window][front] = instance
    canvas.colour[window][front] = rgb.reshape(*front.shape, 3)[front]
    return int(hit.sum())


def render_frame(
    scene: Scene, cam: Camera, background: Canvas, boxes: np.ndarray, bodies: list[Body]
) -> tuple[Canvas, np.ndarray]:
    """Draw the targets of one frame over ``background``; returns the canvas and per-target visibility ``[O]``."""
    canvas = background.copy()
    corners = bounding_corners(boxes, bodies)
    unoccluded = np.array(
        [
            draw_body(canvas, cam, box, body, c, scene.light, i)
            for i, (box, body, c) in enumerate(zip(boxes, bodies, corners, strict=True))
        ],
        dtype=float,
    )
    visible = np.bincount(canvas.instance[canvas.instance >= 0], minlength=len(bodies)).astype(float)
    visibility = np.divide(visible, unoccluded, out=np.zeros(len(bodies)), where=unoccluded > 0)
    return canvas, visibility


def visible_rects(canvas: Canvas, count: int) -> np.ndarray:
    """Each target's visible pixels as a box ``[count, 4]`` (x1, y1, x2, y2; pixel edges), NaN if unseen.

    This is how the MTMC ground truth's "2d bounding box visible" is defined: from what the renderer shows.
    """
    rows, cols = np.nonzero(canvas.instance >= 0)
    ids = canvas.instance[rows, cols]
    rects = np.full((count, 4), np.nan)
    if ids.size:
        seen = np.zeros(count, bool)
        seen[ids] = True
        for k, (values, reduce, pad) in enumerate(
            ((cols, np.minimum, 0), (rows, np.minimum, 0), (cols, np.maximum, 1), (rows, np.maximum, 1))
        ):
            out = np.full(count, np.inf if reduce is np.minimum else -np.inf)
            reduce.at(out, ids, values + pad)
            rects[seen, k] = out[seen]
    return rects


def finish_image(canvas: Canvas, rng: np.random.Generator, noise_std: float) -> np.ndarray:
    """Add sensor noise and quantise to ``uint8 [H, W, 3]``."""
    img = canvas.colour + rng.normal(0.0, noise_std, canvas.colour.shape) if noise_std > 0 else canvas.colour
    return np.round(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)


def depth_map(canvas: Canvas, cam: Camera) -> np.ndarray:
    """Distance to the image plane ``[H, W]`` in metres (as the MTMC depth maps store it)."""
    return canvas.distance * cam.forward_cos
