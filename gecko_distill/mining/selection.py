"""Positive and hard-negative selection from the fused ranking (Gecko §3.2, Table 3).

Positive: ``fused`` = fused top-1 p₁ (the paper's best; it can differ from the seed) or ``seed``.
Hard negative: ``last`` = p_N (the lowest fused rank; the paper's best, p₂₀ at N = 20), ``rank:K`` = p_K,
or ``random`` = uniform over the candidates other than the positive. The negative is never the positive.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Selection", "select"]


@dataclass(frozen=True, slots=True)
class Selection:
    positive: int  # candidate index
    negative: int


def select(order: Sequence[int], seed_index: int, *, positive_policy: str = "fused",
           negative_policy: str = "last", rng: random.Random | None = None) -> Selection:
    """Pick candidate indices. ``order`` is the fused order (best first); ``seed_index`` the seed's index."""
    if len(order) < 2:
        raise ValueError("need at least two candidates to pick a positive and a negative")
    if positive_policy == "fused":
        pos = order[0]
    elif positive_policy == "seed":
        pos = seed_index
    else:
        raise ValueError(f"unknown positive_policy {positive_policy!r}; valid: fused, seed")
    rest = [i for i in order if i != pos]  # still in fused order
    if negative_policy == "last":
        neg = rest[-1]
    elif negative_policy == "random":
        neg = (rng or random.Random(0)).choice(rest)
    elif negative_policy.startswith("rank:"):
        k = int(negative_policy.split(":", 1)[1])
        # p_K in the full fused order; if that is the positive (seed policy), take the next lower one.
        cand = order[min(k, len(order)) - 1]
        neg = cand if cand != pos else rest[min(k, len(rest)) - 1]
    else:
        raise ValueError(f"unknown negative_policy {negative_policy!r}; valid: last, random, rank:K")
    return Selection(pos, neg)
