"""Temporal batch sampler: every batch slot walks its own sequence frame by frame, in order.

Sequences (optionally cut into clips) are dealt to the slots of all ranks so their loads balance (each clip goes
to the least-loaded slot). Training pads short slots with further clips so every batch is full and every rank takes
the same number of steps; evaluation does not pad, and orders slots longest first so a finished slot only ever
leaves from the end of the batch and the others keep their slot index (and so their instance-bank state).
A pass over many sequences can be cut into several epochs (``epochs_per_pass``): each epoch takes the next share of
the pass's shuffled clips, so every clip is seen once per pass, and validation and checkpoints come at every share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

Clip = tuple[int, int]  # (first global frame index, length)


class TemporalBatchSampler(Sampler[list[tuple[int, bool]]]):
    """Yields batches of ``(global frame index, is_first)``; ``is_first`` marks where a slot starts a clip."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        pad: bool = True,
        clip_len: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
        epochs_per_pass: int = 1,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if clip_len is not None and clip_len < 1:
            raise ValueError(f"clip_len must be >= 1 or None, got {clip_len}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} must lie in [0, num_replicas={num_replicas})")
        if epochs_per_pass < 1:
            raise ValueError(f"epochs_per_pass must be >= 1, got {epochs_per_pass}")
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.shuffle, self.seed, self.pad = batch_size, shuffle, seed, pad
        self.clip_len, self.num_replicas, self.rank = clip_len, num_replicas, rank
        self.epochs_per_pass = epochs_per_pass
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle per epoch, identically on every rank."""
        self.epoch = epoch

    def _clips(self) -> list[Clip]:
        clips: list[Clip] = []
        start = 0
        for n in self.lengths:
            step = self.clip_len or max(n, 1)
            clips += [(start + off, min(step, n - off)) for off in range(0, n, step)]
            start += n
        k = self.epochs_per_pass
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch // k]).permutation(len(clips))
            clips = [clips[i] for i in order]
        if k > 1 and len(clips) < k:
            raise ValueError(
                f"epochs_per_pass={k} exceeds the {len(clips)} training clips of a pass: every epoch needs one; "
                "lower it or cut the sequences into clips (clip_len)"
            )
        share = self.epoch % k
        return clips[share * len(clips) // k : (share + 1) * len(clips) // k]

    def _plan(self) -> list[list[Clip]]:
        """This rank's slots, each a list of clips."""
        clips = self._clips()
        slots: list[list[Clip]] = [[] for _ in range(self.batch_size * self.num_replicas)]
        load = np.zeros(len(slots), dtype=np.int64)
        for clip in clips:
            s = int(load.argmin())
            slots[s].append(clip)
            load[s] += clip[1]
        if self.pad and len(clips):
            longest = int(load.max())
            cursor = 0
            for s, slot in enumerate(slots):
                while load[s] < longest:  # wrap around the clip list, cutting the last clip to fit
                    first, n = clips[cursor % len(clips)]
                    take = min(n, longest - int(load[s]))
                    slot.append((first, take))
                    load[s] += take
                    cursor += 1
        mine = slots[self.rank :: self.num_replicas]  # slots interleave over ranks: few sequences still spread
        if not any(mine) and clips and not self.pad:
            # Lightning needs a batch on every rank: a rank left without a sequence evaluates a copy of the first
            # one, whose frames the evaluation then counts once (``Sparse4DModule`` pools ranks by frame).
            mine = [[clips[0]]]
        return sorted(mine, key=lambda slot: -sum(n for _, n in slot))

    @staticmethod
    def _walk(slot: list[Clip]) -> list[tuple[int, bool]]:
        return [(first + t, t == 0) for first, n in slot for t in range(n)]

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        walks = [self._walk(slot) for slot in self._plan()]
        for step in range(max((len(w) for w in walks), default=0)):
            yield [w[step] for w in walks if step < len(w)]

    def __len__(self) -> int:
        return max((sum(n for _, n in slot) for slot in self._plan()), default=0)
