"""From the last layer's predictions to detections, as upstream's SparseBox3DDecoder, plus what the
false-positive analysis needs: every query's score and whether it survived.

Scores come from the classification scheme's ``score_fn``; the top-k runs over queries x classes (or over queries
with their best class when ``squeeze_classes``, upstream's tracking mode, so an instance id appears at most once per
frame); the score threshold applies to the class score; the final score multiplies in sigmoid(centerness). Unlike
upstream, the raw class scores are re-gathered after the final sort, so ``cls_scores[i]`` belongs to ``boxes_3d[i]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .. import geometry
from .outputs import ModelOutput

CENTERNESS, YAWNESS = 0, 1


@torch.no_grad()
def post_process(
    output: ModelOutput,
    score_fn: Callable[[Tensor], Tensor],
    num_output: int,
    score_threshold: float,
    squeeze_classes: bool = True,
) -> list[dict[str, Tensor]]:
    """Per slot: ``boxes_3d [M, 10]``, ``scores_3d``, ``labels_3d``, ``cls_scores``, ``instance_ids``,
    ``query_index`` (all ``[M]``, best first), ``query_scores [Q]`` (each query's best class score),
    ``query_class_scores [Q, C]`` (every class's) and ``query_kept [Q]`` bool."""
    final = output.final
    scores = score_fn(final.cls.float())  # [B, Q, C]
    B, Q = scores.shape[:2]
    query_scores, best = scores.max(dim=-1)
    candidates = query_scores[..., None] if squeeze_classes else scores
    per_query = candidates.shape[-1]
    cls_scores, index = candidates.flatten(1).topk(min(num_output, Q * per_query), dim=1)
    query = index // per_query
    labels = best.gather(1, query) if squeeze_classes else index % per_query
    kept = cls_scores >= score_threshold
    final_scores = cls_scores
    if final.quality is not None:
        final_scores = cls_scores * final.quality[..., CENTERNESS].float().gather(1, query).sigmoid()
        order = final_scores.argsort(dim=1, descending=True, stable=True)
        final_scores, cls_scores, labels, query, kept = (
            x.gather(1, order) for x in (final_scores, cls_scores, labels, query, kept)
        )
    boxes = geometry.anchor_to_box(final.anchor.float())
    ids = output.instance_ids if output.instance_ids is not None else torch.full_like(best, -1)
    results = []
    for b in range(B):
        keep = kept[b]
        q = query[b][keep]
        survived = torch.zeros(Q, dtype=torch.bool, device=q.device)
        survived[q] = True
        results.append(
            {
                "boxes_3d": boxes[b, q],
                "scores_3d": final_scores[b][keep],
                "labels_3d": labels[b][keep],
                "cls_scores": cls_scores[b][keep],
                "instance_ids": ids[b, q],
                "query_index": q,
                "query_scores": query_scores[b],
                "query_class_scores": scores[b],
                "query_kept": survived,
            }
        )
    return results
