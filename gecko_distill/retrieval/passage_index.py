"""Choosing and building the passage index: exact, FAISS flat, IVF or HNSW, sized from the corpus.

``plan_index`` turns a corpus size into an :class:`IndexPlan` (kind and parameters, with the reason);
:class:`PassageIndex` builds it incrementally (``train`` on a sample, then ``add`` shard by shard) and
searches it with the ordering contract of :mod:`gecko_distill.retrieval.neighbours`.

Determinism: IVF training uses a seeded sample and FAISS's seeded k-means; HNSW graphs are built with one
thread because a multi-threaded insert order depends on scheduling. Searches run one query per thread,
so thread count does not change results. ``threads=`` pins FAISS's OpenMP threads for a call and
restores them afterwards.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gecko_distill.errors import ConfigError
from gecko_distill.retrieval.neighbours import Neighbours, exact_search, topk_rows

__all__ = ["AUTO_EXACT_BELOW", "INDEX_KINDS", "IndexPlan", "PassageIndex", "build_index", "faiss_threads",
           "plan_index", "search"]

logger = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "exact", "faiss-flat", "faiss-ivf", "faiss-hnsw")
IndexKind = Literal["exact", "faiss-flat", "faiss-ivf", "faiss-hnsw"]

#: ``auto`` stays exact below this many passages: exact search over 100k x 384 float32 (150 MB) costs
#: ~80 MFLOP per query (milliseconds on 2 CPU cores) with perfect recall; from there on an IVF index
#: searches 3-5x faster at recall@20 ~0.95 (bench/scale.py: 0.948 at 100k, 0.975 at 1M).
AUTO_EXACT_BELOW = 100_000


@dataclass(frozen=True, slots=True)
class IndexPlan:
    """Which index to build for ``num_passages`` vectors of ``dim``, with its parameters and why."""

    kind: IndexKind
    num_passages: int
    dim: int
    nlist: int = 0
    nprobe: int = 0
    train_size: int = 0
    hnsw_m: int = 0
    ef_construction: int = 0
    ef_search: int = 0
    storage: Literal["flat", "sq8"] = "flat"
    reason: str = ""

    def describe(self) -> str:
        if self.kind == "faiss-ivf":
            p = f"nlist={self.nlist} nprobe={self.nprobe} train={self.train_size} storage={self.storage}"
        elif self.kind == "faiss-hnsw":
            p = (f"M={self.hnsw_m} efConstruction={self.ef_construction} efSearch={self.ef_search} "
                 f"train={self.train_size} storage={self.storage}")
        else:
            p = ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.kind}({p}) for {self.num_passages} x {self.dim}{why}"


def plan_index(num_passages: int, dim: int, *, index: str = "auto", k: int = 20,
               storage: Literal["flat", "sq8"] = "flat", nlist: int | None = None, nprobe: int | None = None,
               hnsw_m: int | None = None, ef_search: int | None = None) -> IndexPlan:
    """Pick the index kind and its parameters from the corpus size (explicit values win)."""
    if index not in INDEX_KINDS:
        raise ConfigError(f"mining.index={index!r} is not one of {', '.join(INDEX_KINDS)}")
    if storage not in ("flat", "sq8"):
        raise ConfigError(f"index storage={storage!r} is not one of 'flat', 'sq8'")
    n = int(num_passages)
    if index == "auto":
        if n < AUTO_EXACT_BELOW:
            return IndexPlan("exact", n, dim, reason=f"auto: {n} < {AUTO_EXACT_BELOW} passages")
        index = "faiss-ivf"
    if index in ("exact", "faiss-flat"):
        return IndexPlan(index, n, dim)  # type: ignore[arg-type]
    if index == "faiss-ivf":
        # nlist ~ sqrt(n) (a multiple of 16). FAISS's guideline is 4..16*sqrt(n) for query-heavy serving;
        # mining issues at most about one query per passage on CPUs, so build cost counts as much as query
        # cost: training is O(40*nlist * nlist * d), assigning every passage O(n * nlist * d). Measured at
        # 1M x 384 (hashed text, CPU s): nlist 1024 builds in 17 s and gives recall@20 0.958/0.976 at
        # nprobe 64/128; nlist 2000 builds in 37 s for 0.964/0.977 at nprobe 134/250 -- same recall per
        # query cost, twice the build.
        nl = nlist or max(16, round(math.sqrt(max(n, 1)) / 16) * 16)
        nl = min(nl, max(1, n))  # k-means needs at least one point per centroid
        # Train on 40 points per centroid: FAISS warns below 39; more points cost time linearly.
        train = min(n, 40 * nl)
        # nprobe ~ 4*sqrt(nlist): the scanned share 4/sqrt(nlist) shrinks slowly with the corpus while
        # recall holds, since larger corpora cluster more tightly (hashed text: 0.93-0.95 at 100k with
        # nlist 320, 0.976 at 1M with nlist 1024). Raise `nprobe` for recall, lower it for speed.
        npb = nprobe or min(nl, max(16, round(4 * math.sqrt(nl))))
        return IndexPlan("faiss-ivf", n, dim, nlist=nl, nprobe=npb, train_size=train, storage=storage,
                         reason=f"IVF for {n} passages")
    # HNSW: M=32 links per node is the usual recall/memory balance (+256 B per vector, ~17% on 384-d
    # float32); efSearch >= 4k keeps recall@20 >= 0.95 on the tests' clustered data and MiniLM vectors.
    m = hnsw_m or 32
    efs = ef_search or max(64, 4 * k)
    return IndexPlan("faiss-hnsw", n, dim, hnsw_m=m, ef_construction=max(80, 2 * m), ef_search=efs,
                     train_size=min(n, 65536) if storage == "sq8" else 0, storage=storage,
                     reason=f"HNSW for {n} passages")


@contextmanager
def faiss_threads(n: int | None) -> Iterator[None]:
    """Pin FAISS's OpenMP thread count inside the block (``None`` leaves it alone)."""
    if n is None:
        yield
        return
    import faiss

    old = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old)


class PassageIndex:
    """An inner-product index over L2-normalised passage vectors, filled incrementally.

    Use: ``idx = PassageIndex(plan)``; if ``idx.needs_training``: ``idx.train(sample)``; then
    ``idx.add(shard)`` for every shard in corpus order (row ids are assigned consecutively);
    ``idx.search(queries, k=...)``.
    """

    def __init__(self, plan: IndexPlan, *, seed: int = 0, threads: int | None = None) -> None:
        self.plan = plan
        self.seed = seed
        self.threads = threads
        # IVF needs its coarse quantiser trained; SQ8 storage needs its per-dimension value ranges.
        sq8_hnsw = plan.kind == "faiss-hnsw" and plan.storage == "sq8"
        self._trained = not (plan.kind == "faiss-ivf" or sq8_hnsw)
        self._ntotal = 0
        self._data: np.ndarray | None = None  # exact: preallocated (capacity, dim) float32
        self._faiss: Any = None
        if plan.kind == "exact":
            self._data = np.empty((max(plan.num_passages, 1), plan.dim), dtype=np.float32)
        else:
            self._faiss = self._make_faiss(plan, seed)

    @staticmethod
    def _make_faiss(plan: IndexPlan, seed: int) -> Any:
        import faiss

        d, ip = plan.dim, faiss.METRIC_INNER_PRODUCT
        if plan.kind == "faiss-flat":
            return faiss.IndexFlatIP(d)
        if plan.kind == "faiss-hnsw":
            if plan.storage == "sq8":
                idx = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, plan.hnsw_m, ip)
            else:
                idx = faiss.IndexHNSWFlat(d, plan.hnsw_m, ip)
            idx.hnsw.efConstruction = plan.ef_construction
            idx.hnsw.efSearch = plan.ef_search
            return idx
        quantizer = faiss.IndexFlatIP(d)
        if plan.storage == "sq8":
            idx = faiss.IndexIVFScalarQuantizer(quantizer, d, plan.nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        else:
            idx = faiss.IndexIVFFlat(quantizer, d, plan.nlist, ip)
        # Spherical k-means: the vectors are unit-norm and searched by inner product, so unit-norm
        # centroids make "closest centroid" mean the same thing at training and at search time.
        idx.cp.spherical = True
        idx.cp.seed = seed
        idx.cp.niter = 10  # coarse quantiser: recall barely moves after ~10 iterations, cost is linear
        idx.nprobe = plan.nprobe
        return idx

    @property
    def needs_training(self) -> bool:
        return not self._trained

    @property
    def ntotal(self) -> int:
        return self._ntotal

    def train(self, sample: np.ndarray) -> None:
        """Train the IVF coarse quantiser (and SQ8 ranges) on ``sample`` (a no-op for other kinds)."""
        if self._trained:
            return
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        with faiss_threads(self.threads):
            self._faiss.train(sample)
        self._trained = True
        logger.info("trained %s on %d vectors", self.plan.describe(), len(sample))

    def add(self, emb: np.ndarray) -> None:
        """Append vectors; their ids are ``ntotal .. ntotal + len(emb) - 1``."""
        if not self._trained:
            raise RuntimeError("PassageIndex.add before train(): IVF indexes need a training sample first")
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.plan.dim:
            raise ValueError(f"expected vectors of shape (n, {self.plan.dim}), got {emb.shape}")
        if self._data is not None:
            if self._ntotal + len(emb) > len(self._data):  # more than planned: grow (amortised doubling)
                cap = max(2 * len(self._data), self._ntotal + len(emb))
                grown = np.empty((cap, self.plan.dim), np.float32)
                grown[: self._ntotal] = self._data[: self._ntotal]
                self._data = grown
            self._data[self._ntotal : self._ntotal + len(emb)] = emb
        else:
            # HNSW insertion order depends on thread scheduling: build it single-threaded to be reproducible.
            with faiss_threads(1 if self.plan.kind == "faiss-hnsw" else self.threads):
                self._faiss.add(emb)
        self._ntotal += len(emb)

    def add_shards(self, shards: Callable[[], Iterable[np.ndarray]]) -> None:
        """Add every vector of ``shards()`` (a re-iterable source, called up to twice), in order.

        An empty IVF-Flat index is filled with exactly-sized inverted lists: a first pass assigns every
        vector to its list, the lists are allocated at their final size, and a second pass writes the
        vectors. FAISS's own ``add`` appends one vector at a time and its lists grow by doubling, which
        costs ~1.4x the vectors' size at 1M passages. The result is identical to ``add`` (same lists,
        same order within each list). Other kinds simply ``add`` each shard.
        """
        if self.plan.kind != "faiss-ivf" or self.plan.storage != "flat" or self._ntotal or not self._trained:
            for vecs in shards():
                self.add(vecs)
            return
        import faiss

        ivf = self._faiss
        with faiss_threads(self.threads):
            assign = np.concatenate([ivf.quantizer.assign(np.ascontiguousarray(v, np.float32), 1).ravel()
                                     for v in shards()])
        invlists = faiss.downcast_InvertedLists(ivf.invlists)
        counts = np.bincount(assign, minlength=self.plan.nlist)
        for lst in np.nonzero(counts)[0]:
            invlists.resize(int(lst), int(counts[lst]))  # from empty: allocates exactly this size
        cursor = np.zeros(self.plan.nlist, dtype=np.int64)
        pos = 0
        for vecs in shards():
            a = assign[pos : pos + len(vecs)]
            order = np.argsort(a, kind="stable")  # group by list, ascending id inside a list (as `add`)
            ids = np.arange(pos, pos + len(vecs), dtype=np.int64)[order]
            # An IVF-Flat code is the raw float32 vector.
            codes = np.ascontiguousarray(vecs[order], dtype=np.float32).view(np.uint8)
            lists, starts = np.unique(a[order], return_index=True)
            for lst, st, en in zip(lists, starts, [*starts[1:], len(vecs)], strict=True):
                invlists.update_entries(int(lst), int(cursor[lst]), int(en - st), faiss.swig_ptr(ids[st:en]),
                                        faiss.swig_ptr(codes[st:en]))
                cursor[lst] += en - st
            pos += len(vecs)
        ivf.ntotal = pos
        self._ntotal = pos

    def search(self, query_emb: np.ndarray, *, k: int) -> Neighbours:
        """Top-``k`` per query: score desc, then passage index asc; ``-1`` / ``-inf`` for missing hits.

        ``exact`` and ``faiss-flat`` give identical, exact results. IVF and HNSW are approximate: which of
        several equal-scored passages makes the cut at the k-th place is up to FAISS (but reproducible).
        """
        q = np.ascontiguousarray(query_emb, dtype=np.float32)
        if self._data is not None:
            return exact_search(q, self._data[: self._ntotal], k=k)
        if self.plan.kind == "faiss-flat":
            # Same brute force and tie handling as 'exact', over FAISS's own storage (zero-copy view).
            import faiss

            xb = faiss.rev_swig_ptr(self._faiss.get_xb(), self._ntotal * self.plan.dim)
            return exact_search(q, xb.reshape(self._ntotal, self.plan.dim), k=k)
        k = min(k, max(self._ntotal, 1))
        with faiss_threads(self.threads):
            s, i = self._faiss.search(q, k)
        s = np.where(i < 0, -np.inf, s).astype(np.float32)
        # FAISS orders by score only; re-sort so ties come out by passage index like exact search.
        oi, os_ = topk_rows(s, k, i.astype(np.int64))
        return Neighbours(np.where(np.isneginf(os_), -1, oi), os_)


def build_index(plan: IndexPlan, passage_emb: np.ndarray, *, seed: int = 0, threads: int | None = None,
                ) -> PassageIndex:
    """Build ``plan`` over an in-memory matrix (training sample drawn with ``seed``)."""
    idx = PassageIndex(plan, seed=seed, threads=threads)
    if idx.needs_training:
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(len(passage_emb), size=plan.train_size, replace=False))
        idx.train(passage_emb[rows])
    idx.add_shards(lambda: (passage_emb[s : s + 65536] for s in range(0, len(passage_emb), 65536)))
    return idx


def search(query_emb: np.ndarray, passage_emb: np.ndarray, *, k: int, index: str = "auto",
           seed: int = 0, threads: int | None = None, **plan_overrides: Any) -> Neighbours:
    """Top-``k`` by inner product over an in-memory passage matrix.

    ``index``: ``auto`` (exact below :data:`AUTO_EXACT_BELOW` passages, FAISS IVF above), ``exact``,
    ``faiss-flat``, ``faiss-ivf`` or ``faiss-hnsw``; the FAISS parameters come from :func:`plan_index`
    (``plan_overrides`` such as ``nprobe=`` or ``storage="sq8"`` are passed through).
    """
    n, dim = passage_emb.shape
    plan = plan_index(n, dim, index=index, k=k, **plan_overrides)
    if plan.kind == "exact":
        return exact_search(query_emb, passage_emb, k=k)
    idx = build_index(plan, passage_emb, seed=seed, threads=threads)
    return idx.search(query_emb, k=k)
