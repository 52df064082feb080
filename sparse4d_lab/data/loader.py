"""Temporal batches loaded in parallel by workers that each own whole batch slots, and so whole sequences.

A DataLoader deals batches to its workers in turn, so with two workers each one would read every other frame of
every sequence: a video reader in each then decodes the whole sequence again (and with a long keyframe interval,
every frame between two of its reads). Here each step's batch is cut into one part per worker, part ``w`` holding
the slots ``w, w + W, w + 2W, ...``; the DataLoader's strict round-robin hands part ``w`` of every step to worker
``w``, which therefore reads its sequences front to back, and the parts are put together again in slot order. The
batches are the same as with ``num_workers=0``, slot for slot.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from .dataset import STACKED, SequenceDataset, collate
from .sampler import TemporalBatchSampler


class _WorkerParts(Sampler[list[tuple[int, bool]]]):
    """Each batch of the temporal sampler as ``workers`` parts, part ``w`` holding slots ``w::workers``.

    Active slots are always a prefix of the batch (a finished slot leaves from its end), so a part may be empty
    near the end of an evaluation; it is still dealt, to keep every worker on its own slots.
    """

    def __init__(self, batches: TemporalBatchSampler, workers: int):
        self.batches, self.workers = batches, workers

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        for batch in self.batches:
            for w in range(self.workers):
                yield batch[w :: self.workers]

    def __len__(self) -> int:
        return len(self.batches) * self.workers


def _collate_part(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return collate(samples) if samples else {}


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One batch from the workers' parts, slots back in order (slot ``s`` is item ``s // W`` of part ``s % W``)."""
    parts = [p for p in parts if p]
    if len(parts) == 1:
        return parts[0]
    sizes = [len(p["scene"]) for p in parts]
    starts = [0, *itertools.accumulate(sizes)]
    order = torch.tensor([starts[s % len(parts)] + s // len(parts) for s in range(sum(sizes))])
    batch: dict[str, Any] = {}
    for key in parts[0]:
        if key in STACKED:
            batch[key] = torch.cat([p[key] for p in parts])[order]
        else:
            flat = [v for p in parts for v in p[key]]
            batch[key] = [flat[i] for i in order.tolist()]
    return batch


class SequenceLoader:
    """Iterates the temporal sampler's batches of ``dataset``, loaded by ``num_workers`` processes owning slots.

    Lightning sees the sampler as ``batch_sampler`` (it sets the epoch there) and the length in batches.
    """

    def __init__(self, dataset: SequenceDataset, batch_sampler: TemporalBatchSampler, num_workers: int = 0):
        self.batch_sampler, self.num_workers = batch_sampler, num_workers
        self.parts = max(num_workers, 1)
        self.loader = DataLoader(
            dataset,
            batch_sampler=_WorkerParts(batch_sampler, self.parts),
            collate_fn=_collate_part,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for part in self.loader:
            parts.append(part)
            if len(parts) == self.parts:
                yield merge_parts(parts)
                parts = []
