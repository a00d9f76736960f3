"""Encoding in token-budgeted batches: the same model and the same texts, less wall time on a CPU.

Why: sentence-transformers' ``encode`` cuts the (length-sorted) texts into batches of a fixed *count*.
On a CPU the cost of a batch is not only its matrix products but the activations every element-wise op
(GELU, softmax, layer norm, residual adds) streams through memory: for MiniLM at 64 x 256 tokens the
attention probabilities alone are 64 x 12 x 256 x 256 x 4 B = 200 MB and the FFN activations 100 MB, far
beyond the caches. Capping the *padded tokens* per batch keeps those working sets small for long texts
while short texts (LLM queries) still go in large batches. Measured with all-MiniLM-L6-v2 on the 2-core
CPU machine (``bench/mining.py``; docs/performance.md): 500 SciFact passages + 200 claims took ~23 s in
fixed batches of 64 and ~20 s under a 4,096-token budget; the same budget was also faster than every fixed
batch size tried (8 to 128) on a corpus of mixed lengths.

On a GPU bigger batches are better, so ``"auto"`` only budgets on the CPU. Embeddings are the same up to
float rounding of a different batch composition (max |diff| ~ 1e-7, neighbour lists identical).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

__all__ = ["AUTO_CPU_BATCH_TOKENS", "BatchTokens", "encode_batched", "resolve_batch_tokens", "token_budget_batches"]

#: ``"auto"`` on a CPU: measured best-or-equal among 1,024 / 2,048 / 4,096 on SciFact and the Lee corpus.
AUTO_CPU_BATCH_TOKENS = 4096

#: ``"auto"``: budget on a CPU, fixed batches elsewhere; an int: always budget; ``None``: fixed batches.
BatchTokens = int | Literal["auto"] | None


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


def resolve_batch_tokens(model: Any, setting: BatchTokens) -> int | None:
    """The token budget to use for ``model``: ``"auto"`` budgets only on a CPU; ints must be >= 1."""
    if setting is None:
        return None
    if setting == "auto":
        device = getattr(model, "device", None)
        return AUTO_CPU_BATCH_TOKENS if getattr(device, "type", device) == "cpu" else None
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"batch_tokens must be 'auto', a positive int or None, got {setting!r}")
    return setting


def _token_lengths(model: Any, texts: list[str]) -> np.ndarray | None:
    """Tokens per text (with special tokens, truncated to the model's max length); None if unknowable.

    Only used to group texts, so an approximation would do; the model's own tokenizer makes it exact
    for plain Transformer+Pooling models. Costs one extra tokenizer pass (fast, Rust) over the texts.
    """
    tok = getattr(model, "tokenizer", None)
    if tok is None or not callable(tok):
        return None
    max_len = getattr(model, "max_seq_length", None)
    try:
        ids = tok(texts, add_special_tokens=True, truncation=max_len is not None, max_length=max_len,
                  return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    except Exception:  # an exotic tokenizer: fall back to fixed batches rather than fail the encode
        return None
    return np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(texts))


def encode_batched(model: Any, texts: Sequence[str], *, batch_size: int = 64, batch_tokens: BatchTokens = "auto",
                   show_progress: bool = False, **encode_kwargs: Any) -> np.ndarray:
    """``model.encode(texts, ...)`` as float32 numpy, in token-budgeted batches when that applies.

    ``encode_kwargs`` go to every ``model.encode`` call (``normalize_embeddings``, ``prompt``, ...).
    Without a budget (GPU under ``"auto"``, ``batch_tokens=None``, or a model without a tokenizer) this
    is one ``model.encode`` call with ``batch_size``, exactly as before.
    """
    texts = list(texts)
    budget = resolve_batch_tokens(model, batch_tokens)
    lengths = _token_lengths(model, texts) if budget is not None and texts else None
    kwargs = {"convert_to_numpy": True, **encode_kwargs}
    if lengths is None:
        out = model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress, **kwargs)
        return np.ascontiguousarray(out, dtype=np.float32)
    batches = token_budget_batches(lengths, batch_size=batch_size, max_tokens=budget)
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(texts), desc="encode", unit="text")
    result: np.ndarray | None = None
    for idx in batches:
        emb = np.asarray(model.encode([texts[i] for i in idx], batch_size=len(idx), show_progress_bar=False,
                                      **kwargs), dtype=np.float32)
        if result is None:
            result = np.empty((len(texts), emb.shape[1]), dtype=np.float32)
        result[idx] = emb
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    assert result is not None
    return result
