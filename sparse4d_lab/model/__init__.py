"""Sparse4D v3 in plain PyTorch."""

from importlib import import_module
from typing import Any

from .config import ModelConfig, tao_r101, tiny

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

_TORCH = {
    "anchors_from_gt": "anchors",
    "Denoising": "outputs",
    "LayerOutput": "outputs",
    "ModelOutput": "outputs",
    "QueryGenerator": "sparse4d",
    "ScoreFn": "sparse4d",
    "Sparse4D": "sparse4d",
}


def __getattr__(name: str) -> Any:
    """The modules that need torch (3 s to import) load on first use, so that reading the model's config (the
    config tree, a study's own process) does not."""
    if name in _TORCH:
        return getattr(import_module(f".{_TORCH[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
