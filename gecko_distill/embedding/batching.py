"""Encoding in token-budgeted batches: the same model and the same texts, less wall time on a CPU.

Why: sentence-transformers' ``encode`` sorts texts by *character* length and cuts batches of a fixed
*count*; each batch pads to its longest text in tokens. Where characters per token vary (Wikipedia markup,
numbers, names) the char order groups texts badly and a batch of 64 pads most of its rows: 36% of the
tokens through the model were padding on the demo's Wikipedia passages, 7-12% on SciFact and news. We sort
by the tokenizer's own lengths and cap each batch at a number of *padded tokens* as well as texts, so long
passages go in small batches and short queries in big ones: padding falls to 1-5%, and the activations
every element-wise op streams through (GELU, softmax, layer norm; at 64 x 256 tokens the attention
probabilities alone are 200 MB for MiniLM) stay small. The matrix products themselves already run near
this CPU's fp32 peak, so fewer tokens is the only fp32-exact saving left. ``bench/mining.py`` measures it
side by side with ``mine_hard_negatives`` (docs/performance.md): x1.37 on the demo's passages, x1.10 on
news, x1.02-1.07 on SciFact (mostly cut at 256 tokens, little padding to save), with peak RSS ~25% lower.

On a GPU bigger batches are better, so ``"auto"`` only budgets on the CPU. Embeddings are the same up to
float rounding of a different batch composition (max |diff| ~ 1e-7; top-20 lists agree with
sentence-transformers' to 1.0000 on SciFact and the demo passages, 0.9998 on news: one near-tie swapped).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from gecko_distill._batching import token_budget_batches

__all__ = ["AUTO_CPU_BATCH_TOKENS", "BatchTokens", "encode_batched", "resolve_batch_tokens", "token_budget_batches"]

#: ``"auto"`` on a CPU: 8 texts of 256 tokens. 2,048 and 4,096 were equal within noise on SciFact and the Lee
#: corpus (1,024 was slower in the one run tried); 2,048 pads less and holds less memory.
AUTO_CPU_BATCH_TOKENS = 2048

#: ``"auto"``: budget on a CPU, fixed batches elsewhere; an int: always budget; ``None``: fixed batches.
BatchTokens = int | Literal["auto"] | None


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
