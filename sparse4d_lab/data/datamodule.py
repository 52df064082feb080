"""Lightning DataModule over any scene source (the synthetic warehouse, MTMC scenes, OVPKL files): temporal
batches per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import lightning.pytorch as pl

from .config import CLASSES, WarehouseConfig
from .dataset import SequenceDataset
from .loader import SequenceLoader
from .sampler import TemporalBatchSampler
from .scene_data import SceneData
from .synthetic import ensure_dataset, load_split


class SceneSource(Protocol):
    """Where a DataModule's scenes come from: the class names, a one-off preparation, the scenes of a split."""

    @property
    def classes(self) -> tuple[str, ...]: ...

    def prepare(self) -> None: ...

    def scenes(self, split: str) -> list[SceneData]: ...


class WarehouseSource:
    """The synthetic warehouse: built (or verified) in its cache by ``prepare``, loaded per split."""

    classes = CLASSES

    def __init__(self, config: WarehouseConfig, cache_dir: str | Path | None = None):
        self.config, self.cache_dir = config, cache_dir

    def prepare(self) -> None:
        ensure_dataset(self.config, self.cache_dir)

    def scenes(self, split: str) -> list[SceneData]:
        return load_split(self.config, split, self.cache_dir)


class SceneDataModule(pl.LightningDataModule):
    """Train batches shuffle clips and pad slots (full batches, equal steps per rank); val/test walk in order."""

    def __init__(
        self,
        source: SceneSource,
        batch_size: int = 2,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        clip_len: int | None = None,
        seed: int = 0,
        epochs_per_pass: int = 1,
    ):
        super().__init__()
        self.source = source
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.clip_len, self.seed = num_workers, clip_len, seed
        self.epochs_per_pass = epochs_per_pass
        self.datasets: dict[str, SequenceDataset] = {}

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.source.classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare_data(self) -> None:
        self.source.prepare()

    def dataset(self, split: str) -> SequenceDataset:
        if split not in self.datasets:
            self.datasets[split] = SequenceDataset(self.source.scenes(split))
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage or "fit", ("train", "val", "test")):
            self.dataset(split)

    def _loader(self, split: str, train: bool) -> SequenceLoader:
        data = self.dataset(split)
        trainer = getattr(self, "trainer", None)
        sampler = TemporalBatchSampler(
            data.lengths,
            self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            pad=train,
            clip_len=self.clip_len if train else None,
            epochs_per_pass=self.epochs_per_pass if train else 1,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
        )
        return SequenceLoader(data, sampler, self.num_workers)

    def train_dataloader(self) -> SequenceLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> SequenceLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> SequenceLoader:
        return self._loader("test", train=False)


class WarehouseDataModule(SceneDataModule):
    """The DataModule of the synthetic warehouse (cache once, then temporal batches per split); ``loading`` takes
    ``SceneDataModule``'s batch, worker, clip and seed arguments."""

    def __init__(self, config: WarehouseConfig, cache_dir: str | Path | None = None, **loading: Any):
        super().__init__(WarehouseSource(config, cache_dir), **loading)
        self.config, self.cache_dir = config, cache_dir
