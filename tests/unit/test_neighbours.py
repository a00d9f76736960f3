"""Neighbour search: exact top-k and its tie order, seed forcing, FAISS IVF/HNSW recall, streamed shards.

Run: ``.venv/bin/pytest tests/unit/test_neighbours.py`` (~15 s). The encoder here is a deterministic
hash-to-vector fake: these tests check search and caching logic, not embedding quality (that is
tests/integration/test_neighbours_real.py, with MiniLM).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from gecko_distill.errors import ConfigError
from gecko_distill.retrieval.corpus_embeddings import encode_corpus_streaming, shard_key
from gecko_distill.retrieval.neighbours import (
    Neighbours,
    encode_texts,
    exact_search,
    force_seed,
    measure_recall,
    merge_topk,
    neighbour_recall,
    topk_rows,
)
from gecko_distill.retrieval.passage_index import (
    AUTO_EXACT_BELOW,
    PassageIndex,
    build_index,
    plan_index,
    search,
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _reference_topk(q: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Full sort of every row by (score desc, index asc): the contract, computed the slow way."""
    sims = (q.astype(np.float64) @ p.astype(np.float64).T).astype(np.float32)
    idx = np.array([np.lexsort((np.arange(p.shape[0]), -row))[:k] for row in sims])
    return idx, np.take_along_axis(sims, idx, axis=1)


def _clustered(n: int, d: int, clusters: int, seed: int, noise: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, d))
    return _unit(centers[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d)))


class HashEncoder:
    """Deterministic fake encoder (text -> seeded Gaussian vector); counts what it encodes."""

    fingerprint = "hash-encoder-v1"

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim
        self.encoded: list[str] = []

    def encode(self, texts: list[str], **_: object) -> np.ndarray:
        self.encoded.extend(texts)
        seeds = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little") for t in texts]
        return _unit(np.stack([np.random.default_rng(s).standard_normal(self.dim) for s in seeds]))


# -- exact search ---------------------------------------------------------------------------------------
def test_exact_search_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    p, q = _unit(rng.standard_normal((3000, 24))), _unit(rng.standard_normal((300, 24)))
    got = exact_search(q, p, k=20)
    ref_i, ref_s = _reference_topk(q, p, 20)
    np.testing.assert_array_equal(got.indices, ref_i)
    np.testing.assert_allclose(got.scores, ref_s, atol=1e-5)
    assert got.indices.dtype == np.int64 and got.scores.dtype == np.float32
    # offset shifts ids; k larger than the corpus returns the whole corpus
    assert (exact_search(q, p, k=5, offset=1000).indices == got.indices[:, :5] + 1000).all()
    assert exact_search(q, p[:7], k=20).indices.shape == (300, 7)


def test_ties_come_out_by_index_and_the_cut_keeps_lowest_ids() -> None:
    rng = np.random.default_rng(1)
    distinct = _unit(rng.standard_normal((12, 8)))
    # 12 distinct vectors, each repeated 5 times at shuffled positions: every score is a 5-way tie.
    p = distinct[rng.permutation(np.repeat(np.arange(12), 5))]
    q = _unit(rng.standard_normal((30, 8)))
    ref_i, _ = _reference_topk(q, p, 7)  # k=7 cuts through the second tie group
    for res in (exact_search(q, p, k=7), search(q, p, k=7, index="exact"),
                search(q, p, k=7, index="faiss-flat")):
        np.testing.assert_array_equal(res.indices, ref_i)
    # The same call twice gives the same answer.
    np.testing.assert_array_equal(exact_search(q, p, k=7).indices, exact_search(q, p, k=7).indices)


def test_topk_rows_hand_table() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5], [0.2, 0.2, 0.2, 0.2, 0.2]], dtype=np.float32)
    idx, sc = topk_rows(scores, 3)
    assert idx.tolist() == [[1, 0, 2], [0, 1, 2]]  # 0.9 first, then the 0.5-tie by index; all-tie row
    assert sc.tolist()[0] == pytest.approx([0.9, 0.5, 0.5])
    idx, _ = topk_rows(scores, 2, ids=np.array([40, 30, 20, 10, 0]))
    assert idx.tolist() == [[30, 0], [0, 10]]  # named ids: ties broken by the id, not the column


def test_merge_topk_equals_search_over_the_union() -> None:
    rng = np.random.default_rng(2)
    p, q = _unit(rng.standard_normal((500, 16))), _unit(rng.standard_normal((9, 16)))
    a, b = exact_search(q, p[:200], k=10), exact_search(q, p[200:], k=10, offset=200)
    merged = merge_topk(a, b, 10)
    np.testing.assert_array_equal(merged.indices, exact_search(q, p, k=10).indices)


def test_recall_at_k_counts_overlap_and_ignores_padding() -> None:
    exact = Neighbours(np.array([[1, 2, 3, 4], [5, 6, 7, 8]]), np.zeros((2, 4), np.float32))
    approx = Neighbours(np.array([[4, 3, 9, -1], [5, 6, 7, 8]]), np.zeros((2, 4), np.float32))
    assert neighbour_recall(approx, exact) == pytest.approx((2 / 4 + 1.0) / 2)


# -- seed forcing ------------------------------------------------------------------------------------------
def test_force_seed_present_keeps_order() -> None:
    assert force_seed([4, 2, 9], [0.9, 0.8, 0.1], seed=2, seed_score=0.8) == ([4, 2, 9], [0.9, 0.8, 0.1])


def test_force_seed_absent_drops_the_last_and_inserts_by_score() -> None:
    idx, sc = force_seed([4, 2, 9], [0.9, 0.8, 0.1], seed=7, seed_score=0.85)
    assert idx == [4, 7, 2] and sc == pytest.approx([0.9, 0.85, 0.8])
    idx, _ = force_seed([4, 2, 9], [0.9, 0.8, 0.1], seed=7, seed_score=-0.5)  # worse than all: goes last
    assert idx == [4, 2, 7]


def test_force_seed_duplicates_and_padding_free_a_slot() -> None:
    # A duplicate (2 twice) and a -1 pad: both removed, so the seed fits without dropping anything.
    idx, sc = force_seed([4, 2, 2, -1], [0.9, 0.8, 0.8, -np.inf], seed=5, seed_score=0.3)
    assert idx == [4, 2, 5] and sc == pytest.approx([0.9, 0.8, 0.3])
    idx, _ = force_seed(np.array([3, -1]), np.array([0.5, -np.inf]), seed=np.int64(3), seed_score=0.5)
    assert idx == [3] and isinstance(idx[0], int)


# -- index planning and approximate search ---------------------------------------------------------------
def test_plan_index_by_corpus_size() -> None:
    assert plan_index(AUTO_EXACT_BELOW - 1, 384).kind == "exact"
    big = plan_index(1_000_000, 384)
    assert big.kind == "faiss-ivf" and big.nlist == 992  # ~sqrt(n), a multiple of 16
    assert big.train_size >= 39 * big.nlist and big.nprobe == 126  # ~4*sqrt(nlist)
    small_ivf = plan_index(500, 64, index="faiss-ivf")
    assert small_ivf.nprobe >= 16 and small_ivf.train_size <= 500
    assert plan_index(10, 8, index="faiss-hnsw", k=20).ef_search >= 80
    assert plan_index(2_000_000, 384, nprobe=7).nprobe == 7
    with pytest.raises(ConfigError, match="faiss-ivf"):
        plan_index(10, 8, index="ivf")


@pytest.mark.parametrize("kind", ["faiss-ivf", "faiss-hnsw"])
def test_approximate_recall_at_20_against_exact(kind: str) -> None:
    data = _clustered(20_400, 64, clusters=100, seed=3, noise=1.2)
    p, q = data[:20_000], data[20_000:]
    exact = exact_search(q, p, k=20)
    approx = search(q, p, k=20, index=kind)
    assert neighbour_recall(approx, exact) >= 0.9
    # Deterministic: building again gives the same neighbours.
    np.testing.assert_array_equal(search(q, p, k=20, index=kind).indices, approx.indices)
    # The measurement can fail: a deliberately starved search loses recall.
    weak = {"nprobe": 1} if kind == "faiss-ivf" else {"ef_search": 20, "hnsw_m": 4}
    assert neighbour_recall(search(q, p, k=20, index=kind, **weak), exact) < 0.9


def test_measure_recall_on_a_sample_and_sq8_storage() -> None:
    data = _clustered(8_200, 32, clusters=50, seed=4)
    p, q = data[:8_000], data[8_000:]
    idx = build_index(plan_index(len(p), 32, index="faiss-ivf", storage="sq8"), p)
    def exact(x: np.ndarray, k: int) -> Neighbours:
        return exact_search(x, p, k=k)

    r = measure_recall(lambda x, k: idx.search(x, k=k), exact, q, k=20, sample=50)
    assert 0.85 <= r <= 1.0
    exact_idx = build_index(plan_index(len(p), 32, index="exact"), p)
    assert measure_recall(lambda x, k: exact_idx.search(x, k=k), exact, q) == 1.0


def test_ivf_needs_training_and_exact_index_grows() -> None:
    idx = PassageIndex(plan_index(100, 8, index="faiss-ivf"))
    with pytest.raises(RuntimeError, match="train"):
        idx.add(np.zeros((2, 8), np.float32))
    ex = PassageIndex(plan_index(2, 8, index="exact"))
    v = _unit(np.random.default_rng(5).standard_normal((5, 8)))
    ex.add(v[:2])
    ex.add(v[2:])  # more than planned: grows
    assert ex.ntotal == 5 and ex.search(v, k=1).indices[:, 0].tolist() == [0, 1, 2, 3, 4]


# -- streamed corpus encoding ------------------------------------------------------------------------------
TEXTS = [f"passage number {i} about topic {i % 7}" for i in range(230)]


def test_streaming_equals_in_memory_search(tmp_path: Path) -> None:
    enc = HashEncoder()
    corpus = encode_corpus_streaming(enc, iter(TEXTS), shard_size=50, out_dir=tmp_path)  # a generator works
    assert corpus.num_passages == 230 and len(corpus.shard_paths) == 5 and corpus.plan.kind == "exact"
    full = HashEncoder().encode(TEXTS)
    q = HashEncoder().encode([f"query {i}" for i in range(12)])
    np.testing.assert_array_equal(corpus.search(q, k=20).indices, exact_search(q, full, k=20).indices)
    np.testing.assert_array_equal(corpus.exact_search(q, k=20).indices, exact_search(q, full, k=20).indices)
    np.testing.assert_array_equal(corpus.vectors([229, 0, 51]), full[[229, 0, 51]])
    assert corpus.measure_recall(q, k=20, sample=5) == 1.0
    assert not list(tmp_path.glob("*.tmp")) and (tmp_path / "embeddings.json").exists()


def test_streaming_resume_reuses_finished_shards_and_never_reads_half_written(tmp_path: Path) -> None:
    first = HashEncoder()
    encode_corpus_streaming(first, TEXTS, shard_size=50, out_dir=tmp_path)
    assert len(first.encoded) == 230
    shards = sorted(tmp_path.glob("emb-*.npy"))
    # Simulate a crash: shard 2 never finished (only its temp file exists), shard 3 is truncated garbage.
    shards[2].rename(tmp_path / f".{shards[2].name}.abc.tmp")
    shards[3].write_bytes(shards[3].read_bytes()[:40])
    again = HashEncoder()
    corpus = encode_corpus_streaming(again, TEXTS, shard_size=50, out_dir=tmp_path)
    assert again.encoded == TEXTS[100:200]  # exactly the two unfinished shards
    assert (corpus.reused_shards, corpus.encoded_shards) == (3, 2)
    np.testing.assert_array_equal(corpus.vectors(range(230)), HashEncoder().encode(TEXTS))
    # A finished run is a pure cache hit.
    third = HashEncoder()
    assert encode_corpus_streaming(third, TEXTS, shard_size=50, out_dir=tmp_path).encoded_shards == 0
    assert third.encoded == []


def test_streaming_cache_is_keyed_by_texts_and_model(tmp_path: Path) -> None:
    encode_corpus_streaming(HashEncoder(), TEXTS, shard_size=50, out_dir=tmp_path)
    edited = list(TEXTS)
    edited[120] = "an edited passage"
    enc = HashEncoder()
    encode_corpus_streaming(enc, edited, shard_size=50, out_dir=tmp_path)
    assert enc.encoded == edited[100:150]  # only the shard whose texts changed
    assert len(list(tmp_path.glob("emb-00002-*.npy"))) == 1  # the stale version was removed
    other_model = HashEncoder()
    other_model.fingerprint = "hash-encoder-v2"  # type: ignore[misc]
    encode_corpus_streaming(other_model, edited, shard_size=50, out_dir=tmp_path)
    assert len(other_model.encoded) == 230
    assert shard_key("m", ["ab", "c"]) != shard_key("m", ["a", "bc"])  # text boundaries are part of the key


def test_streaming_ivf_matches_in_memory_ivf(tmp_path: Path) -> None:
    texts = [f"text {i}" for i in range(3000)]
    enc = HashEncoder(dim=16)
    corpus = encode_corpus_streaming(enc, texts, shard_size=700, index="faiss-ivf", seed=3)  # temp dir
    q = HashEncoder(dim=16).encode([f"q {i}" for i in range(40)])
    mem = search(q, HashEncoder(dim=16).encode(texts), k=20, index="faiss-ivf", seed=3)
    got = corpus.search(q, k=20)
    np.testing.assert_array_equal(got.indices, mem.indices)  # same seeded sample -> same index
    shard_dir = corpus.directory
    assert shard_dir.exists()
    corpus.close()
    assert not shard_dir.exists()


def test_streaming_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shard_size"):
        encode_corpus_streaming(HashEncoder(), TEXTS, shard_size=0, out_dir=tmp_path)
    with pytest.raises(ValueError, match="no texts"):
        encode_corpus_streaming(HashEncoder(), [], out_dir=tmp_path)
    with pytest.raises(ConfigError, match="mining.index"):
        encode_corpus_streaming(HashEncoder(), TEXTS, out_dir=tmp_path, index="annoy")


def test_encode_texts_encodes_each_distinct_text_once() -> None:
    enc = HashEncoder()
    texts = ["a", "b", "a", "c", "b"]
    emb = encode_texts(enc, texts)
    assert enc.encoded == ["a", "b", "c"]
    np.testing.assert_array_equal(emb, HashEncoder().encode(texts))
    assert emb.dtype == np.float32 and emb.flags.c_contiguous
