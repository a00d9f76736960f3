"""Per-source sampling weights for multi-source training.

sentence-transformers trains on a ``DatasetDict`` by building one batch sampler per source (here the
no-duplicates sampler) and a multi-dataset sampler that decides which source each batch comes from. Its
built-in choices are round-robin and size-proportional; :class:`WeightedSourceBatchSampler` draws the
source of each batch with probability proportional to a user weight instead. Every batch holds rows of
one source only, so sources with different column sets (pairs vs triplets) and formats never mix inside
a loss call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from itertools import accumulate
from typing import Any

import torch
from sentence_transformers.base.sampler import MultiDatasetDefaultBatchSampler
from torch.utils.data import BatchSampler, ConcatDataset

__all__ = ["WeightedSourceBatchSampler", "weighted_sampler_factory"]


class WeightedSourceBatchSampler(MultiDatasetDefaultBatchSampler):
    """Pick each batch's source at random with probability ``weight / sum(weights)``.

    An epoch has as many batches as all sources together (like the proportional sampler), so the learning-
    rate schedule does not depend on the weights. A source that runs out is restarted (a new shuffle), so a
    small source with a large weight is repeated rather than exhausted. Deterministic for a seed and epoch,
    which lets the trainer skip already-seen batches when it resumes mid-epoch.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
        *,
        weights: Sequence[float],
    ) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        if len(weights) != len(batch_samplers):
            raise ValueError(f"{len(weights)} weights for {len(batch_samplers)} sources")
        if any(w <= 0 for w in weights):
            raise ValueError(f"source weights must be > 0, got {list(weights)}")
        self.weights = torch.tensor([float(w) for w in weights], dtype=torch.float64)

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator()
        gen.manual_seed((self.seed or 0) + self.epoch)
        offsets = [0, *accumulate(len(d) for d in self.dataset.datasets)]
        choices = torch.multinomial(self.weights, len(self), replacement=True, generator=gen).tolist()
        iters: list[Iterator[list[int]]] = [iter(s) for s in self.batch_samplers]
        restarts = [0] * len(iters)
        for src in choices:
            batch = next(iters[src], None)
            if batch is None:  # source exhausted: reshuffle it with a new epoch seed and go on
                restarts[src] += 1
                sampler = self.batch_samplers[src]
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self.epoch * 1000 + restarts[src])
                iters[src] = iter(sampler)
                batch = next(iters[src], None)
                if batch is None:
                    continue
            yield [i + offsets[src] for i in batch]

    def __len__(self) -> int:
        return sum(len(s) for s in self.batch_samplers)


def weighted_sampler_factory(weights: Sequence[float]) -> Any:
    """A callable for ``SentenceTransformerTrainingArguments(multi_dataset_batch_sampler=...)``."""
    return partial(WeightedSourceBatchSampler, weights=list(weights))
