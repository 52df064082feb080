"""Semantics profiles: the training and evaluation rules around the classification loss, as TAO 6.25's Sparse4D
port and as upstream Sparse4D v3 apply them. An arm changes the loss; the profile fixes everything around it.

Each profile sets ``Sparse4DCriterion`` keywords, ``ModelConfig`` fields and ``EvalCollector`` keywords. The
experiment configs ``experiments/conf/semantics/{tao,upstream}.yaml`` hold the same values (a test checks it).
"""

from __future__ import annotations

from typing import Any

# What both apply: the same threshold to regress, denoising normalisation and attached centerness target.
_SHARED = {
    "cls_threshold_to_reg": 0.05,
    "dn_avg_factor": "valid",
    "dn_quality_loss": False,
    "detach_centerness_target": False,
    "temporal_assign_threshold": 0.5,
}
_TRACKING = {"track_score": "class", "track_min_score": 0.2}

SEMANTICS: dict[str, dict[str, dict[str, Any]]] = {
    "tao": {
        "criterion": {**_SHARED, "yawness_reduction": "mean", "temporal_assign": True},
        "model": {"velocity_refinement": "replace", "confidence_decay": 0.8, "score_threshold": 0.05},
        "eval": dict(_TRACKING),
    },
    "upstream": {
        "criterion": {**_SHARED, "yawness_reduction": "avg_factor", "temporal_assign": False},
        "model": {"velocity_refinement": "add", "confidence_decay": 0.6, "score_threshold": 0.0},
        "eval": dict(_TRACKING),
    },
}


def profile(name: str) -> dict[str, dict[str, Any]]:
    """The profile ``name``; an unknown name lists the valid ones."""
    if name not in SEMANTICS:
        raise ValueError(f"unknown semantics {name!r}; valid: {', '.join(SEMANTICS)}")
    return SEMANTICS[name]
