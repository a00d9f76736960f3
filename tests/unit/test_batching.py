"""Token-budgeted batching: the plan (pure logic) and the encode wrapper on a scripted encoder."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gecko_distill.embedding.batching import (
    AUTO_CPU_BATCH_TOKENS,
    encode_batched,
    resolve_batch_tokens,
    token_budget_batches,
)


def test_budget_plan_puts_long_texts_in_small_batches_and_short_in_big() -> None:
    lengths = [256] * 10 + [20] * 100 + [128] * 5
    batches = token_budget_batches(lengths, batch_size=64, max_tokens=1024)
    # Longest first; every text exactly once; no batch over the budget or the count cap.
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    # 256-token texts 4 at a time (the third batch also takes two 128s), 128s 8 at a time, 20s 51 at a time.
    assert [len(b) for b in batches] == [4, 4, 4, 8, 51, 44]
    for b in batches:
        assert len(b) <= 64 and len(b) * max(lengths[i] for i in b) <= 1024
    # Stable: equal lengths keep input order.
    assert batches[0].tolist() == [0, 1, 2, 3]


def test_budget_plan_edge_cases() -> None:
    # A text longer than the budget still gets a batch of its own.
    assert [b.tolist() for b in token_budget_batches([5000, 10], batch_size=8, max_tokens=1000)] == [[0], [1]]
    # No budget: plain fixed-size batches of the length-sorted order.
    assert [len(b) for b in token_budget_batches([3, 1, 2, 5, 4], batch_size=2, max_tokens=None)] == [2, 2, 1]
    assert token_budget_batches([], batch_size=4, max_tokens=100) == []
    with pytest.raises(ValueError, match="batch_size"):
        token_budget_batches([1], batch_size=0, max_tokens=10)
    with pytest.raises(ValueError, match="max_tokens"):
        token_budget_batches([1], batch_size=1, max_tokens=0)


def test_auto_budgets_only_on_cpu() -> None:
    cpu, gpu = SimpleNamespace(device=SimpleNamespace(type="cpu")), SimpleNamespace(device=SimpleNamespace(type="cuda"))
    assert resolve_batch_tokens(cpu, "auto") == AUTO_CPU_BATCH_TOKENS
    assert resolve_batch_tokens(gpu, "auto") is None
    assert resolve_batch_tokens(gpu, 512) == 512 and resolve_batch_tokens(cpu, None) is None
    with pytest.raises(ValueError, match="batch_tokens"):
        resolve_batch_tokens(cpu, 0)


class WordEncoder:
    """A scripted encoder on the CPU: one token per word, embedding = (words, first char code)."""

    device = SimpleNamespace(type="cpu")
    max_seq_length = 6

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def tokenizer(self, texts, *, add_special_tokens, truncation, max_length, **_):  # noqa: ANN001, ANN201
        return {"input_ids": [t.split()[:max_length] if truncation else t.split() for t in texts]}

    def encode(self, texts, *, batch_size, show_progress_bar, convert_to_numpy, **kw):  # noqa: ANN001, ANN201
        assert convert_to_numpy and not show_progress_bar and kw == {"normalize_embeddings": True}
        self.calls.append(list(texts))
        return np.array([[len(t.split()), ord(t[0])] for t in texts], dtype=np.float64)


def test_encode_batched_keeps_input_order_and_respects_the_budget() -> None:
    texts = ["a b c d e f g h", "b", "c c", "d d d d d d", "e", "f f f"]
    enc = WordEncoder()
    out = encode_batched(enc, texts, batch_size=3, batch_tokens=6, normalize_embeddings=True)
    assert out.dtype == np.float32 and out.shape == (6, 2)
    np.testing.assert_array_equal(out[:, 1], [ord(t[0]) for t in texts])  # rows back in input order
    # Truncated to 6 tokens, budget 6: the two 6-token texts go one per batch, then the 3- and 2-token texts,
    # then the two 1-token ones (the budget would allow 6, the remaining texts are 2).
    assert [len(c) for c in enc.calls] == [1, 1, 2, 2]
    # Without a budget: a single encode call, as sentence-transformers would do it.
    plain = WordEncoder()
    np.testing.assert_array_equal(encode_batched(plain, texts, batch_size=3, batch_tokens=None,
                                                 normalize_embeddings=True), out)
    assert len(plain.calls) == 1
