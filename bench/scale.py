"""Neighbour search at scale: time and peak RSS at 10k, 100k and 1M passages (issue 6 item 3).

Each corpus size runs in a fresh subprocess (so its peak RSS is its own) through the real streaming
path: synthetic passages -> :func:`encode_corpus_streaming` (shards on disk) -> the index that
``index=auto`` picks (exact below 100k, FAISS IVF above) -> top-20 for 1,000 queries -> recall@20 of
that index against exact search on 200 of the queries.

Why a hashing embedder: all-MiniLM-L6-v2 encodes roughly 10-60 passages/s on 2 CPU cores, so 1M
passages would take hours. The scale path (sharding, index building, search, memory) does not depend
on which model made the vectors, so the sizes use scikit-learn's ``HashingVectorizer`` (sub-linear
counts) projected to 384 dims (MiniLM's width) -- cheap, deterministic, and with the topic structure of
text, which matters for IVF recall (uniform random vectors would be an unrealistically hard case).
A separate line times MiniLM on a sample of the same passages and extrapolates its encode time to 1M.

Synthetic passages: pseudo-words from a fixed seed (no word list needed), each passage drawn from one
of 500 topics (half its words from the topic's Zipf-weighted word list, half from a Zipfian background).

    python bench/scale.py                       # 10k, 100k, 1M + MiniLM on 300 passages
    python bench/scale.py --sizes 10000,100000  # choose sizes
    python bench/scale.py --index faiss-hnsw --minilm 0
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

DIM = 384
NUM_TOPICS = 500
NUM_QUERIES = 1000


def _vocab(size: int = 20000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sylls = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
    words: dict[str, None] = {}
    while len(words) < size:
        n = int(rng.integers(2, 5))
        words["".join(sylls[j] for j in rng.integers(0, len(sylls), n))] = None
    return np.array(list(words))


class SyntheticCorpus:
    """Deterministic synthetic passages with topic structure; generated lazily, shard by shard."""

    def __init__(self, seed: int = 0) -> None:
        self.vocab = _vocab(seed=seed)
        rng = np.random.default_rng(seed + 1)
        self.topics = rng.integers(0, len(self.vocab), size=(NUM_TOPICS, 40))
        zipf = 1.0 / np.arange(1, 41)
        self.topic_p = zipf / zipf.sum()
        bg = 1.0 / np.arange(1, len(self.vocab) + 1)
        self.bg_p = bg / bg.sum()
        self.seed = seed

    def _texts(self, n: int, rng: np.random.Generator, min_len: int, max_len: int) -> list[str]:
        topic = rng.integers(0, NUM_TOPICS, n)
        lens = rng.integers(min_len, max_len + 1, n)
        from_topic = self.topics[topic[:, None], rng.choice(40, size=(n, max_len), p=self.topic_p)]
        background = rng.choice(len(self.vocab), size=(n, max_len), p=self.bg_p)
        ids = np.where(rng.random((n, max_len)) < 0.5, from_topic, background)
        words = self.vocab[ids]
        return [" ".join(words[i, : lens[i]]) for i in range(n)]

    def passages(self, n: int, chunk: int = 8192) -> Iterator[str]:
        for c, start in enumerate(range(0, n, chunk)):
            rng = np.random.default_rng([self.seed, c])
            yield from self._texts(min(chunk, n - start), rng, 30, 70)

    def queries(self, n: int) -> list[str]:
        return self._texts(n, np.random.default_rng([self.seed, 10**9]), 6, 12)


class HashingEmbedder:
    """Hashed sub-linear word counts -> fixed Gaussian projection to ``dim``; an ``encode()`` like ST's."""

    fingerprint = f"bench-hashing-v1-d{DIM}"

    def __init__(self, dim: int = DIM, n_features: int = 1 << 15, seed: int = 0) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vec = HashingVectorizer(n_features=n_features, alternate_sign=False, norm=None)
        self.proj = np.random.default_rng(seed).standard_normal((n_features, dim)).astype(np.float32)

    def encode(self, texts: list[str], *, normalize_embeddings: bool = True, **_: Any) -> np.ndarray:
        x = self.vec.transform(texts).astype(np.float32)
        x.data = np.log1p(x.data)
        emb = np.asarray(x @ self.proj, dtype=np.float32)
        if normalize_embeddings:
            emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_size(n: int, index: str, workdir: Path, shard_size: int) -> dict[str, Any]:
    """One corpus size, in this (fresh) process."""
    from gecko_distill.retrieval.corpus_embeddings import encode_corpus_streaming
    from gecko_distill.retrieval.neighbours import Neighbours, neighbour_recall

    synth = SyntheticCorpus()
    emb = HashingEmbedder()
    base_rss = _peak_rss_mib()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    corpus = encode_corpus_streaming(emb, synth.passages(n), shard_size=shard_size, out_dir=workdir / f"n{n}",
                                     index=index, k=20)
    q = emb.encode(synth.queries(NUM_QUERIES))
    t1 = time.perf_counter()
    nb = corpus.search(q, k=20)
    t_search = time.perf_counter() - t1
    total = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    # recall@20 against exact search (streamed over the shards) on a seeded sample of 200 queries.
    rows = np.sort(np.random.default_rng(0).choice(NUM_QUERIES, size=200, replace=False))
    t2 = time.perf_counter()
    exact = corpus.exact_search(q[rows], k=20)
    t_exact = (time.perf_counter() - t2) * NUM_QUERIES / len(rows)
    recall = neighbour_recall(Neighbours(nb.indices[rows], nb.scores[rows]), exact, 20)
    return {"n": n, "plan": corpus.plan.describe().split(" for ")[0], "encode_s": corpus.encode_seconds,
            "index_s": corpus.index_seconds, "search_s": t_search, "exact_search_s": t_exact,
            "total_s": total, "cpu_s": cpu,
            "recall": recall, "peak_rss_mib": _peak_rss_mib(), "base_rss_mib": base_rss,
            "index_mib": n * DIM * 4 / 2**20 if corpus.plan.storage == "flat" else n * DIM / 2**20}


def run_minilm(n: int, workdir: Path) -> dict[str, Any]:
    from gecko_distill.embedding import load_embedder
    from gecko_distill.retrieval.corpus_embeddings import encode_corpus_streaming

    model = load_embedder("all-MiniLM-L6-v2", max_seq_length=256)
    texts = list(SyntheticCorpus().passages(n))
    t0 = time.perf_counter()
    encode_corpus_streaming(model, texts, shard_size=512, out_dir=workdir / f"minilm{n}", index="exact")
    dt = time.perf_counter() - t0
    return {"n": n, "seconds": dt, "per_s": n / dt, "peak_rss_mib": _peak_rss_mib()}


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated corpus sizes")
    ap.add_argument("--index", default="auto", help="auto|exact|faiss-flat|faiss-ivf|faiss-hnsw")
    ap.add_argument("--shard-size", type=int, default=16384)
    ap.add_argument("--minilm", type=int, default=300, help="passages to encode with MiniLM (0 = skip)")
    ap.add_argument("--workdir", default=None, help="where shards go (default: a temp dir, removed)")
    ap.add_argument("--child-size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-minilm", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_size or a.child_minilm:
        wd = Path(a.workdir)
        if a.child_size:
            res = run_size(a.child_size, a.index, wd, a.shard_size)
        else:
            res = run_minilm(a.child_minilm, wd)
        print(json.dumps(res))
        return

    sizes = [int(s) for s in a.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="gecko-scale-", dir=a.workdir) as wd:
        rows = []
        for n in sizes:
            r = _child(["--child-size", str(n), "--index", a.index, "--shard-size", str(a.shard_size),
                        "--workdir", wd])
            rows.append(r)
            print(f"n={r['n']:>9,}  {r['total_s']:7.1f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB  "
                  f"(CPU {r['cpu_s']:.1f} s) "
                  f"(encode {r['encode_s']:.1f} s, index {r['index_s']:.1f} s, search {NUM_QUERIES} q "
                  f"{r['search_s']:.2f} s, exact would take {r['exact_search_s']:.2f} s; {r['plan']}; "
                  f"vectors {r['index_mib']:.0f} MiB; recall@20 vs exact {r['recall']:.3f})", flush=True)
        if a.minilm:
            m = _child(["--child-minilm", str(a.minilm), "--workdir", wd])
            print(f"minilm: {m['n']:,} passages in {m['seconds']:.1f} s = {m['per_s']:.1f} passages/s "
                  f"(peak RSS {m['peak_rss_mib']:.0f} MiB) -> 1M passages ~ {1e6 / m['per_s'] / 3600:.1f} h "
                  "on this machine: why the sizes above use the hashing embedder", flush=True)
    parts = []
    linear = True
    for a_, b_ in zip(rows, rows[1:], strict=False):
        x = b_["n"] / a_["n"]

        def exp(key: str, a_: dict[str, Any] = a_, b_: dict[str, Any] = b_, x: float = x) -> float:
            # Growth exponent: y ~ n^e; e <= 1 is linear or better (per 10x, y grows 10^e times).
            return math.log(b_[key] / a_[key]) / math.log(x)

        e_t, e_c, e_m = exp("total_s"), exp("cpu_s"), exp("peak_rss_mib")
        # Verdict on CPU time: wall time on a shared machine also measures the neighbours' load.
        linear &= e_c <= 1.05 and e_m <= 1.05
        parts.append(f"{a_['n']:,}->{b_['n']:,}: time x{b_['total_s'] / a_['total_s']:.1f} (n^{e_t:.2f}), "
                     f"CPU x{b_['cpu_s'] / a_['cpu_s']:.1f} (n^{e_c:.2f}), "
                     f"peak RSS x{b_['peak_rss_mib'] / a_['peak_rss_mib']:.1f} (n^{e_m:.2f})")
    if parts:
        print(f"growth: {'; '.join(parts)} -> {'linear or better' if linear else 'WORSE than linear'}")


if __name__ == "__main__":
    main()
