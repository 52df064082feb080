"""Initial anchors from the training ground truth, as upstream's anchor generator: k-means of the GT centres.

Upstream gives every anchor the mean size of all GT boxes; here each anchor takes the mean size of the most frequent
class in its cluster, so a person-dense region starts with person-sized anchors. Yaw and velocity start at zero.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from torch import Tensor

from .. import geometry


def anchors_from_gt(boxes: Tensor, labels: Tensor, num_anchor: int, seed: int = 0) -> Tensor:
    """``boxes [S, 10]``, ``labels [S]`` -> anchors ``[num_anchor, 11]`` (float32), reproducible for a given seed.

    With fewer distinct centres than anchors, the remaining anchors are drawn uniformly in the centres' bounding
    box (grown by 1 m) so no two anchors coincide.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, geometry.BOX_DIM)
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(boxes) == 0:
        raise ValueError("anchors_from_gt: no ground-truth boxes; pass the training split's boxes (S > 0)")
    rng = np.random.default_rng(seed)
    centres = boxes[:, geometry.X : geometry.Z + 1].numpy()
    unique = np.unique(centres, axis=0)
    if len(unique) > num_anchor:
        means, assignment = kmeans2(centres, num_anchor, minit="++", seed=rng)
    else:
        low, high = unique.min(0) - 1.0, unique.max(0) + 1.0
        means = np.concatenate([unique, rng.uniform(low, high, size=(num_anchor - len(unique), 3))])
        assignment = np.argmin(((centres[:, None] - means[None]) ** 2).sum(-1), axis=1)

    num_classes = int(labels.max()) + 1
    class_size = torch.stack([boxes[labels == c, geometry.L : geometry.H + 1].mean(0) for c in range(num_classes)])
    overall = int(torch.bincount(labels, minlength=num_classes).argmax())
    majority = np.full(num_anchor, overall)
    for k in np.unique(assignment):
        majority[k] = np.bincount(labels.numpy()[assignment == k], minlength=num_classes).argmax()

    anchor_boxes = torch.zeros(num_anchor, geometry.BOX_DIM, dtype=torch.float64)
    anchor_boxes[:, geometry.X : geometry.Z + 1] = torch.from_numpy(means)
    anchor_boxes[:, geometry.L : geometry.H + 1] = class_size[torch.from_numpy(majority)]
    return geometry.box_to_anchor(anchor_boxes).float()


def uniform_anchors(num_anchor: int, box_range: tuple[float, ...], seed: int = 0) -> Tensor:
    """Placeholder anchors uniformly spread over ``(x0, y0, z0, x1, y1, z1)``, 1 m cubes, until ``set_anchors``."""
    generator = torch.Generator().manual_seed(seed)
    low, high = torch.tensor(box_range[:3]), torch.tensor(box_range[3:])
    boxes = torch.zeros(num_anchor, geometry.BOX_DIM)
    boxes[:, geometry.X : geometry.Z + 1] = low + (high - low) * torch.rand(num_anchor, 3, generator=generator)
    boxes[:, geometry.L : geometry.H + 1] = 1.0
    return geometry.box_to_anchor(boxes)
