"""Token-budgeted batch planning, shared by the embedder (``embedding.batching``) and the LLM backends.

A batch pads to its longest member, so grouping items of similar length and capping each batch's padded
size keeps both the padding and the peak activation memory small. Pure NumPy; no model needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["token_budget_batches"]


def token_budget_batches(lengths: Sequence[int] | np.ndarray, *, batch_size: int,
                         max_tokens: int | None) -> list[np.ndarray]:
    """Index batches, longest texts first, each at most ``batch_size`` texts and ``max_tokens`` padded tokens.

    A batch pads to its longest text, so its padded size is ``len(batch) * lengths[first]`` (sorted
    descending). A text longer than the budget still gets a batch of its own. ``max_tokens=None`` gives
    plain fixed-size batches (of the length-sorted order). Ties keep input order (stable sort), so the
    plan is deterministic.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    batches: list[np.ndarray] = []
    i = 0
    while i < len(order):
        n = batch_size if max_tokens is None else min(batch_size, max(1, max_tokens // max(1, int(lens[order[i]]))))
        batches.append(order[i : i + n])
        i += n
    return batches
