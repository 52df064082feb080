"""Sparse4D v3 in plain PyTorch."""

from .anchors import anchors_from_gt
from .config import ModelConfig, tao_r101, tiny
from .outputs import Denoising, LayerOutput, ModelOutput
from .sparse4d import QueryGenerator, ScoreFn, Sparse4D

__all__ = [
    "Denoising",
    "LayerOutput",
    "ModelConfig",
    "ModelOutput",
    "QueryGenerator",
    "ScoreFn",
    "Sparse4D",
    "anchors_from_gt",
    "tao_r101",
    "tiny",
]
