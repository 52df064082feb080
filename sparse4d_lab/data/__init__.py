"""Data: the synthetic multi-camera warehouse, its cache, the sequence dataset and the temporal sampler."""

from .config import CLASSES, ConfigError, WarehouseConfig
from .datamodule import WarehouseDataModule
from .dataset import SequenceDataset, collate
from .sampler import TemporalBatchSampler
from .synthetic import SceneData, ensure_dataset, load_split, render_scene

__all__ = [
    "CLASSES",
    "ConfigError",
    "SceneData",
    "SequenceDataset",
    "TemporalBatchSampler",
    "WarehouseConfig",
    "WarehouseDataModule",
    "collate",
    "ensure_dataset",
    "load_split",
    "render_scene",
]
