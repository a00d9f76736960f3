"""Seed-passage sampling and uniform task-type assignment (paper Table 4: uniform sampling helps)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from gecko_distill.records import Passage

__all__ = ["assign_task_types", "sample_seeds"]


def sample_seeds(passages: Sequence[Passage], n: int, *, seed: int) -> list[Passage]:
    """``n`` distinct passages, uniformly at random, in a deterministic order for a given seed."""
    rng = random.Random(seed)
    idx = rng.sample(range(len(passages)), k=min(n, len(passages)))
    return [passages[i] for i in idx]


def assign_task_types(n: int, task_types: Sequence[str], *, seed: int) -> list[str]:
    """Exactly balanced task types (counts differ by at most one), shuffled deterministically."""
    if not task_types:
        raise ValueError("task_types is empty")
    out = [task_types[i % len(task_types)] for i in range(n)]
    random.Random(seed + 1).shuffle(out)
    return out
