"""Neighbour search with the real all-MiniLM-L6-v2 on real news text (the Lee corpus inside the gensim wheel).

Checks behaviour, not just plumbing: a passage's own first sentence (as a Gecko-formatted query) retrieves
that passage; the streamed, sharded path gives the same neighbours as encoding everything at once; a
rerun reuses every shard; FAISS IVF/HNSW agree with exact search on real embeddings.
Run: ``.venv/bin/pytest tests/integration/test_neighbours_real.py`` (~30 s on 2 cores).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from gecko_distill.embedding import format_document, format_query
from gecko_distill.retrieval.corpus_embeddings import encode_corpus_streaming
from gecko_distill.retrieval.neighbours import encode_texts, force_seed, neighbour_recall
from gecko_distill.retrieval.passage_index import search

NUM_DOCS = 80


@pytest.fixture(scope="module")
def lee() -> tuple[list[str], list[str]]:
    gensim = pytest.importorskip("gensim")
    path = Path(gensim.__file__).parent / "test" / "test_data" / "lee_background.cor"
    docs = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:NUM_DOCS]
    passages = [format_document(" ".join(d.split()[:80])) for d in docs]
    # The first sentence, rephrased nowhere: the passage that contains it must rank near the top.
    queries = [format_query("find the news story", re.split(r"(?<=[.!?])\s", d, maxsplit=1)[0]) for d in docs]
    return passages, queries


@pytest.fixture(scope="module")
def lee_emb(minilm, lee) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The whole corpus and the queries encoded at once (the in-memory reference)."""
    passages, queries = lee
    return encode_texts(minilm, passages, batch_size=16), encode_texts(minilm, queries, batch_size=32)


def test_streamed_minilm_neighbours_find_the_source_passage(  # noqa: ANN001
        minilm, lee, lee_emb, tmp_path: Path) -> None:
    passages, _ = lee
    whole, q = lee_emb
    corpus = encode_corpus_streaming(minilm, passages, shard_size=32, out_dir=tmp_path, batch_size=16)
    assert (corpus.num_passages, corpus.dim, len(corpus.shard_paths)) == (NUM_DOCS, 384, 3)
    nb = corpus.search(q, k=20)
    top1 = np.mean(nb.indices[:, 0] == np.arange(NUM_DOCS))
    top20 = np.mean([i in row for i, row in enumerate(nb.indices)])
    assert top1 >= 0.8 and top20 >= 0.95, (top1, top20)
    # Scores are cosines of unit vectors, best first.
    assert np.all(np.diff(nb.scores, axis=1) <= 0) and nb.scores.max() <= 1.0 + 1e-5
    # Streaming in shards == encoding the whole corpus at once (same neighbours; scores to float noise).
    mem = search(q, whole, k=20, index="exact")
    assert neighbour_recall(nb, mem) >= 0.99
    np.testing.assert_allclose(corpus.vectors(range(NUM_DOCS)), whole, atol=1e-4)
    # Forcing the seed in keeps 20 candidates with the seed among them.
    idx, _ = force_seed(nb.indices[7].tolist(), nb.scores[7].tolist(), 7, float(q[7] @ whole[7]))
    assert len(idx) == 20 and 7 in idx
    # A rerun is a cache hit: nothing is encoded again.
    again = encode_corpus_streaming(minilm, passages, shard_size=32, out_dir=tmp_path, batch_size=16)
    assert (again.reused_shards, again.encoded_shards) == (3, 0)
    np.testing.assert_array_equal(again.search(q, k=20).indices, nb.indices)


def test_approximate_indexes_agree_with_exact_on_minilm_vectors(lee_emb) -> None:  # noqa: ANN001
    p, q = lee_emb
    exact = search(q, p, k=20, index="exact")
    # 80 passages -> IVF with 16 lists, all 16 probed: exhaustive, so it must equal exact search.
    assert neighbour_recall(search(q, p, k=20, index="faiss-ivf"), exact) == 1.0
    assert neighbour_recall(search(q, p, k=20, index="faiss-hnsw"), exact) >= 0.95
    np.testing.assert_array_equal(search(q, p, k=20, index="faiss-flat").indices, exact.indices)


def test_token_budgeted_batches_give_the_same_minilm_embeddings(minilm, lee, lee_emb) -> None:  # noqa: ANN001
    """The CPU default (batches capped in padded tokens) changes how texts are grouped, not the vectors."""
    from gecko_distill.embedding.batching import token_budget_batches

    passages, queries = lee
    whole, _ = lee_emb
    from unittest import mock

    plain = encode_texts(minilm, passages + queries, batch_size=64, batch_tokens=None)
    with mock.patch.object(minilm, "encode", wraps=minilm.encode) as spy:  # the real encode, counted
        budgeted = encode_texts(minilm, passages + queries, batch_size=64, batch_tokens=512)
    assert spy.call_count > 5 and max(len(c.args[0]) for c in spy.call_args_list) <= 64
    np.testing.assert_allclose(budgeted, plain, atol=1e-5)
    np.testing.assert_allclose(budgeted[: len(passages)], whole, atol=1e-5)
    # The real tokenizer's lengths drive the plan: ~100-token passages 4-5 per batch, short queries many more.
    lengths = [len(x) for x in minilm.tokenizer(passages + queries, truncation=True, max_length=256)["input_ids"]]
    sizes = [len(b) for b in token_budget_batches(lengths, batch_size=64, max_tokens=512)]
    assert max(lengths[: len(passages)]) > 80 and sizes[0] <= 6 and max(sizes) > 10, sizes
