"""Data: the synthetic multi-camera warehouse, real MTMC / OVPKL data, the sequence dataset and the sampler."""

from typing import Any

from .config import CLASSES, WarehouseConfig
from .dataset import SequenceDataset, collate
from .mtmc import MtmcConfig, MtmcSource
from .ovpkl import OvpklConfig, OvpklSource
from .real import DataError
from .sampler import TemporalBatchSampler
from .scene_data import SceneData
from .synthetic import ensure_dataset, load_split, render_scene

__all__ = [
    "CLASSES",
    "DataError",
    "MtmcConfig",
    "MtmcSource",
    "OvpklConfig",
    "OvpklSource",
    "SceneData",
    "SceneDataModule",
    "SceneSource",
    "SequenceDataset",
    "TemporalBatchSampler",
    "WarehouseConfig",
    "WarehouseDataModule",
    "WarehouseSource",
    "collate",
    "ensure_dataset",
    "load_split",
    "render_scene",
]

_DATAMODULE = {"SceneDataModule", "SceneSource", "WarehouseDataModule", "WarehouseSource"}


def __getattr__(name: str) -> Any:
    """The data modules import Lightning (6 s here): only on first use, so render workers and the data CLI start
    without it."""
    if name in _DATAMODULE:
        from . import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
