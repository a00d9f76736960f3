"""Top-N neighbour search: queries (``task: … | query: …``) against passages (``title: … | text: …``).

Embeddings are L2-normalised, so inner product = cosine. The seed passage is forced into each query's
neighbour set (the paper keeps "the original" passage among the candidates; forcing it in is [ours]).

Scope: this module holds the in-memory primitives (encode, exact top-k with deterministic ties, FAISS via
:func:`gecko_distill.retrieval.passage_index.search`, recall against exact search, seed forcing). Corpora that do
not fit comfortably in memory go through
:func:`gecko_distill.retrieval.corpus_embeddings.encode_corpus_streaming`, which encodes in shards on disk
and builds the same indexes incrementally.

Ordering contract (every search path): each row is sorted by score descending, then passage index
ascending, so equal scores always come out in the same order; a tie at the k-th place keeps the lowest
passage indices. Missing hits (k larger than what an approximate index found) are ``-1`` with score
``-inf``, at the end of the row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gecko_distill.embedding.batching import BatchTokens, encode_batched

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "Neighbours",
    "encode_texts",
    "exact_search",
    "force_seed",
    "measure_recall",
    "merge_topk",
    "neighbour_recall",
    "topk_rows",
]

logger = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class Neighbours:
    """``indices[i]`` are passage row indices for query i, best first; ``scores`` their cosines."""

    indices: np.ndarray  # (num_queries, k) int64; -1 = no hit
    scores: np.ndarray  # (num_queries, k) float32; -inf where indices == -1


def encode_texts(model: SentenceTransformer | Any, texts: Sequence[str], *, batch_size: int = 64,
                 batch_tokens: BatchTokens = "auto", show_progress: bool = False) -> np.ndarray:
    """Encode to float32, L2-normalised (so inner product is cosine); repeated texts are encoded once.

    ``model`` is a :class:`~sentence_transformers.SentenceTransformer` or anything with the same
    ``encode(texts, batch_size=, convert_to_numpy=, normalize_embeddings=, show_progress_bar=)``.
    ``batch_tokens`` caps the padded tokens per batch (``"auto"``: on a CPU only; see
    :mod:`gecko_distill.embedding.batching`), ``batch_size`` the texts per batch.
    """
    texts = list(texts)
    first = dict.fromkeys(texts)  # LLM-written queries repeat; each distinct text is encoded once
    unique = list(first) if len(first) < len(texts) else texts
    emb = encode_batched(model, unique, batch_size=batch_size, batch_tokens=batch_tokens,
                         show_progress=show_progress, normalize_embeddings=True)
    if unique is texts:
        return emb
    pos = {t: i for i, t in enumerate(unique)}
    return emb[[pos[t] for t in texts]]


def topk_rows(scores: np.ndarray, k: int, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``k`` of a (b, m) score block, ordered by score desc then id asc.

    ``ids`` (b, m) or (m,) names the columns (default ``0..m-1``). Ties at the k-th place are resolved
    towards the lowest id, so the result does not depend on how ``argpartition`` happened to split them.
    Returns ``(ids, scores)`` of shape (b, min(k, m)).
    """
    b, m = scores.shape
    k = min(k, m)
    if ids is None:
        ids = np.arange(m, dtype=np.int64)
    ids = np.broadcast_to(ids, (b, m))
    if k < m:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(m), (b, m))
    ps = np.take_along_axis(scores, part, axis=1)
    pid = np.take_along_axis(ids, part, axis=1)
    order = np.lexsort((pid, -ps), axis=1)  # last key is primary: score desc, then id asc
    out_s = np.take_along_axis(ps, order, axis=1).astype(np.float32, copy=False)
    out_i = np.take_along_axis(pid, order, axis=1).astype(np.int64, copy=True)
    if 0 < k < m:
        # Rows where more than k columns reach the k-th score have a tie straddling the cut; argpartition
        # picks among those arbitrarily, so redo just those rows with a full (id-stable) selection.
        kth = out_s[:, -1:]
        for r in np.nonzero((scores >= kth).sum(axis=1) > k)[0]:
            cand = np.nonzero(scores[r] >= kth[r, 0])[0]
            o = np.lexsort((ids[r, cand], -scores[r, cand]))[:k]
            out_i[r] = ids[r, cand[o]]
            out_s[r] = scores[r, cand[o]]
    return out_i, out_s


def merge_topk(a: Neighbours, b: Neighbours, k: int) -> Neighbours:
    """Top-``k`` of the union of two results for the same queries (used to search shard by shard)."""
    s = np.concatenate([a.scores, b.scores], axis=1)
    i = np.concatenate([a.indices, b.indices], axis=1)
    s = np.where(i < 0, -np.inf, s).astype(np.float32)
    out_i, out_s = topk_rows(s, k, i)
    return Neighbours(np.where(np.isneginf(out_s), -1, out_i), out_s)


#: Bound on |float32 BLAS score - exact score| for unit vectors (~d * 2^-24 for d <= 4096), with margin.
_SCORE_TOL = 1e-5
#: Extra candidates fetched beyond k, so ties at the cut are usually seen without a second pass.
_EXTRA = 16
#: Queries per faiss.knn call: each call streams the whole corpus through BLAS once, so use FAISS's own
#: query block size (4096) rather than many small calls (measured: 256-query calls cost 2.3x the CPU at 1M).
_KNN_BLOCK = 4096
_RESCORE_BLOCK = 256


def _pair_scores(p: np.ndarray, cand: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Scores of ``q[i]`` against ``p[cand[i]]``, position-independent and rounded to float32.

    BLAS may round the same dot product differently depending on where a row falls in its tiles, so two
    identical passages can get scores 1 ulp apart and swap places. Recomputing each pair on its own in
    float64 gives identical passages identical scores, which makes ties (and their index order) real.
    """
    return (p[cand].astype(np.float64) * q.astype(np.float64)[:, None, :]).sum(axis=-1).astype(np.float32)


def exact_search(query_emb: np.ndarray, passage_emb: np.ndarray, *, k: int, offset: int = 0) -> Neighbours:
    """Brute-force inner-product top-``k`` with the ordering contract above.

    FAISS's blocked brute force (``faiss.knn``) finds the best k+16 per query (a heap per query while BLAS
    computes similarity blocks: memory O(queries x k), several times faster than ``argpartition`` over a
    queries x corpus matrix). Those candidates are rescored pair by pair (:func:`_pair_scores`) and
    ordered by (score desc, index asc). If the k-th score is so close to the last fetched one that an
    unfetched passage could tie it, that query is redone over every passage within tolerance (rare).
    ``offset`` is added to the returned indices (for searching one shard of a larger corpus).
    """
    import faiss

    n = passage_emb.shape[0]
    k = min(k, n)
    q = np.ascontiguousarray(query_emb, dtype=np.float32)
    p = np.ascontiguousarray(passage_emb, dtype=np.float32)
    out_i = np.empty((len(q), k), dtype=np.int64)
    out_s = np.empty((len(q), k), dtype=np.float32)
    if k == 0 or len(q) == 0:
        return Neighbours(out_i, out_s)
    kk = min(k + _EXTRA, n)
    for start in range(0, len(q), _KNN_BLOCK):
        qb = q[start : start + _KNN_BLOCK]
        s32, cand = faiss.knn(qb, p, kk, metric=faiss.METRIC_INNER_PRODUCT)  # sorted by score desc
        for r0 in range(0, len(qb), _RESCORE_BLOCK):  # bounded float64 scratch: 256 x (k+16) x d
            sl = slice(r0, r0 + _RESCORE_BLOCK)
            sc = _pair_scores(p, cand[sl], qb[sl])
            order = np.lexsort((cand[sl], -sc), axis=1)[:, :k]
            bi, bs = np.take_along_axis(cand[sl], order, axis=1), np.take_along_axis(sc, order, axis=1)
            if kk < n:
                for r in np.nonzero(bs[:, -1] <= s32[sl][:, -1] + _SCORE_TOL)[0]:
                    qr = qb[r0 + r]
                    c = np.nonzero(p @ qr >= bs[r, -1] - _SCORE_TOL)[0]
                    cs = _pair_scores(p, c[None, :], qr[None, :])[0]
                    o = np.lexsort((c, -cs))[:k]
                    bi[r], bs[r] = c[o], cs[o]
            out_i[start + r0 : start + r0 + len(bi)] = bi + offset
            out_s[start + r0 : start + r0 + len(bi)] = bs
    return Neighbours(out_i, out_s)


def neighbour_recall(approx: Neighbours, exact: Neighbours, k: int | None = None) -> float:
    """How much of exact search's top-k an approximate search found: mean over queries of
    |approx top-k ∩ exact top-k| / |exact top-k| (``-1`` padding ignored).

    Not retrieval recall against relevance labels (that is :func:`gecko_distill.retrieval.metrics.recall_at_k`).
    """
    k = k or exact.indices.shape[1]
    total = 0.0
    for a_row, e_row in zip(approx.indices[:, :k], exact.indices[:, :k], strict=True):
        truth = {int(i) for i in e_row if i >= 0}
        if truth:
            total += len(truth & {int(i) for i in a_row if i >= 0}) / len(truth)
    return total / max(len(exact.indices), 1)


SearchFn = Callable[[np.ndarray, int], Neighbours]


def measure_recall(approx: SearchFn, exact: SearchFn,
                   query_emb: np.ndarray, *, k: int = 20, sample: int = 200, seed: int = 0) -> float:
    """recall@k of an approximate search against exact search on a seeded sample of queries.

    ``approx`` and ``exact`` are ``f(query_emb, k) -> Neighbours``. Exact search over the sample costs
    ``sample x corpus x dim`` flops, which is why only a sample is checked.
    """
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(query_emb), size=min(sample, len(query_emb)), replace=False))
    q = np.ascontiguousarray(query_emb[rows])
    return neighbour_recall(approx(q, k), exact(q, k), k)


def force_seed(indices: Sequence[int], scores: Sequence[float], seed: int, seed_score: float,
               ) -> tuple[list[int], list[float]]:
    """Deduplicate and make sure ``seed`` is in the set, dropping the lowest-ranked one to keep the size."""
    seen: set[int] = set()
    idx: list[int] = []
    sc: list[float] = []
    for i, s in zip(indices, scores, strict=True):
        if i < 0 or i in seen:  # FAISS pads with -1 when k > hits
            continue
        seen.add(int(i))
        idx.append(int(i))
        sc.append(float(s))
    seed = int(seed)
    if seed not in seen:
        if idx and len(idx) == len(indices):
            idx.pop()
            sc.pop()
        # Insert at its score's position so the retriever order stays meaningful.
        pos = next((j for j, x in enumerate(sc) if x < seed_score), len(sc))
        idx.insert(pos, seed)
        sc.insert(pos, float(seed_score))
    return idx, sc
