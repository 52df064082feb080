"""Data: the synthetic multi-camera warehouse, real MTMC / OVPKL data, the sequence dataset and the sampler."""

from .config import CLASSES, ConfigError, WarehouseConfig
from .datamodule import SceneDataModule, SceneSource, WarehouseDataModule, WarehouseSource
from .dataset import SequenceDataset, collate
from .mtmc import MtmcConfig, MtmcSource
from .ovpkl import OvpklConfig, OvpklSource
from .real import DataError
from .sampler import TemporalBatchSampler
from .synthetic import SceneData, ensure_dataset, load_split, render_scene

__all__ = [
    "CLASSES",
    "ConfigError",
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
