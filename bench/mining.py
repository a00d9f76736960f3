"""Our retrieval step vs sentence-transformers' ``mine_hard_negatives`` on the same model, data and k.

Both sides get the same strings (Gecko-formatted queries ``task: … | query: …`` and passages
``title: … | text: …``), the same all-MiniLM-L6-v2 (max_seq_length 256, the mining default), the same
``--batch-size``, L2 normalisation and k; both timings include encoding the corpus and the queries (model
loading excluded from both). The embeddings are the same fp32 computation on both sides (top-k agreement
is printed); no quantisation, no other runtime.

- ours: :func:`encode_corpus_streaming` (shards on disk, fresh directory: no cache hit) + query encoding
  + top-k through the planned index (exact below 100k passages), with its defaults: on a CPU, batches are
  capped at 2,048 padded tokens as well as at ``--batch-size`` texts (:mod:`gecko_distill.embedding.batching`).
- sentence-transformers: ``mine_hard_negatives(dataset, model, corpus=..., num_negatives=k,
  include_positives=True, output_format="n-tuple")`` -- with ``include_positives`` its candidates are
  the plain top-k retrieval, which we compare with ours (agreement = overlap of the two top-k lists).

Each measurement runs in a fresh subprocess (so peak RSS is its own); the two methods alternate (ours,
st, st, ours, ours, st with the default ``--repeats 3``) so slow drift on a shared machine hits both
equally. Two more runs say where the difference comes from: ours with plain fixed batches (``batch_tokens=None``, should
match sentence-transformers) and sentence-transformers at ``--st-small-batch`` (a small fixed batch,
which recovers part of the gain by hand on corpora of uniform length). Ours also runs on half the corpus:
its peak RSS should not grow with the corpus (only the n x 384 float32 index does, 1.5 KiB per passage).

Data (``--data``): SciFact (corpus + train claims with a qrel) from ``$GECKO_BENCHDATA`` or
``../shared/benchdata``; without it, the Lee news corpus shipped in gensim's wheel; ``wiki`` is the demo's
Wikipedia passages (gensim's wheel). Lee and wiki use passages' first sentences as queries.

    python bench/mining.py                          # 500 passages, 200 queries, k=20, 3 runs each (~5 min idle)
    python bench/mining.py --corpus-size 5183 --queries 809 --repeats 1
    python bench/mining.py --data wiki              # the demo's corpus: mixed lengths, more padding to save
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing


def load_data(corpus_size: int, num_queries: int, data: str = "auto") -> tuple[str, list[str], list[str], list[int]]:
    """(source, passages, queries, positive passage index per query), deterministic.

    ``data``: ``scifact`` (human-written claims, abstracts mostly cut at 256 tokens), ``lee`` (news of mixed
    length), ``wiki`` (the demo's Wikipedia passages, mixed length), ``auto`` = scifact when present, else lee.
    For lee and wiki the queries are passages' first sentences.
    """
    from gecko_distill.embedding import format_document, format_query

    bench = Path(os.environ.get("GECKO_BENCHDATA", REPO.parent / "shared" / "benchdata")) / "scifact"
    if data == "scifact" and not (bench / "corpus.jsonl.gz").exists():
        raise SystemExit(f"--data scifact: {bench}/corpus.jsonl.gz not found (set GECKO_BENCHDATA)")
    if data == "wiki":
        import itertools

        from gecko_distill.corpus.demo import iter_demo_corpus

        wiki = list(itertools.islice(iter_demo_corpus("demo:gensim-wiki"), corpus_size))
        passages = [format_document(p.text, p.title) for p in wiki]
        queries = [format_query("find the encyclopedia passage", re.split(r"(?<=[.!?])\s", p.text, maxsplit=1)[0])
                   for p in wiki[:num_queries]]
        return "demo Wikipedia passages (gensim wheel)", passages, queries, list(range(len(queries)))
    if data in ("auto", "scifact") and (bench / "corpus.jsonl.gz").exists():
        with gzip.open(bench / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
            docs = [json.loads(line) for line in f]
        claims = {}
        with open(bench / "queries.jsonl", encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                claims[r["_id"]] = r["text"]
        first_pos: dict[str, str] = {}
        for line in (bench / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            qid, did, _ = line.split("\t")
            first_pos.setdefault(qid, did)
        qids = [q for q in first_pos if q in claims][:num_queries]
        # The queries' positives first, then the corpus in file order up to corpus_size.
        want = list(dict.fromkeys([first_pos[q] for q in qids] + [d["_id"] for d in docs]))[:corpus_size]
        by_id = {d["_id"]: d for d in docs}
        pos = {d: i for i, d in enumerate(want)}
        passages = [format_document(by_id[d]["text"], by_id[d]["title"]) for d in want]
        task = "Given a scientific claim, retrieve documents that support or refute the claim"
        queries = [format_query(task, claims[q]) for q in qids if first_pos[q] in pos]
        positives = [pos[first_pos[q]] for q in qids if first_pos[q] in pos]
        return "SciFact (benchdata)", passages, queries, positives
    import gensim

    path = Path(gensim.__file__).parent / "test" / "test_data" / "lee_background.cor"
    docs = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()][:corpus_size]
    passages = [format_document(d) for d in docs]
    queries = [format_query("find the news story", re.split(r"(?<=[.!?])\s", d, maxsplit=1)[0])
               for d in docs[:num_queries]]
    return "Lee corpus (gensim wheel)", passages, queries, list(range(len(queries)))


def _usage() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_maxrss / 1024


def child(method: str, corpus_size: int, num_queries: int, k: int, batch_size: int, shard_size: int,
          data: str = "auto") -> dict:
    """One timed run: ``ours`` (library defaults), ``ours-plain`` (fixed batches) or ``st``."""
    from gecko_distill.embedding import load_embedder

    _, passages, queries, positives = load_data(corpus_size, num_queries, data)
    model = load_embedder("all-MiniLM-L6-v2", max_seq_length=256)
    cpu0, _ = _usage()
    t0 = time.perf_counter()
    if method.startswith("ours"):
        from gecko_distill.retrieval.corpus_embeddings import encode_corpus_streaming
        from gecko_distill.retrieval.neighbours import encode_texts

        tokens = None if method == "ours-plain" else "auto"
        with tempfile.TemporaryDirectory(prefix="gecko-bench-") as d:
            corpus = encode_corpus_streaming(model, passages, shard_size=shard_size, out_dir=d, k=k,
                                             batch_size=batch_size, batch_tokens=tokens)
            q = encode_texts(model, queries, batch_size=batch_size, batch_tokens=tokens)
            top = corpus.search(q, k=k).indices.tolist()
    else:
        from datasets import Dataset
        from sentence_transformers.util import mine_hard_negatives

        ds = Dataset.from_dict({"anchor": queries, "positive": [passages[i] for i in positives]})
        out = mine_hard_negatives(ds, model, corpus=passages, num_negatives=k, include_positives=True,
                                  output_format="n-tuple", batch_size=batch_size, verbose=False)
        idx = {t: i for i, t in enumerate(passages)}
        # It de-duplicates repeated queries (SciFact repeats a few claims), so map rows back by text.
        by_anchor = {row["anchor"]: [idx[row[f"negative_{j}"]] for j in range(1, k + 1)] for row in out}
        top = [by_anchor[qt] for qt in queries]
    seconds = time.perf_counter() - t0
    cpu1, rss = _usage()
    return {"method": method, "n": len(passages), "q": len(queries), "batch_size": batch_size,
            "seconds": seconds, "cpu_s": cpu1 - cpu0, "peak_rss_mib": rss, "top": top}


def _run(args: argparse.Namespace, method: str, corpus_size: int, batch_size: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--corpus-size", str(corpus_size), "--queries",
           str(args.queries), "--k", str(args.k), "--batch-size", str(batch_size or args.batch_size),
           "--shard-size", str(args.shard_size), "--data", args.data]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def padded_tokens(passages: list[str], queries: list[str], batch_size: int) -> tuple[int, int, int]:
    """(real, ours, sentence-transformers) tokens through the model, padding included: exact, noise-free.

    sentence-transformers' ``encode`` sorts by character length and cuts fixed batches of ``batch_size``;
    ours sorts by token length and caps each batch at the CPU token budget too. Both encode the corpus
    and the queries separately, each de-duplicated.
    """
    from gecko_distill.embedding import load_embedder
    from gecko_distill.embedding.batching import AUTO_CPU_BATCH_TOKENS, token_budget_batches

    model = load_embedder("all-MiniLM-L6-v2", max_seq_length=256)
    real = ours = st = 0
    for texts in (list(dict.fromkeys(passages)), list(dict.fromkeys(queries))):
        lens = np.array([len(x) for x in model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]])
        real += int(lens.sum())
        ours += sum(len(b) * int(lens[b].max())
                    for b in token_budget_batches(lens, batch_size=batch_size, max_tokens=AUTO_CPU_BATCH_TOKENS))
        by_chars = np.argsort([-len(t) for t in texts], kind="stable")
        st += sum(int(lens[by_chars[i : i + batch_size]].max()) * len(by_chars[i : i + batch_size])
                  for i in range(0, len(texts), batch_size))
    return real, ours, st


def _show(r: dict) -> dict:
    print(f"{r['method']:>10} (batch {r['batch_size']:>3}): {r['seconds']:6.1f} s wall, {r['cpu_s']:6.1f} s CPU, "
          f"peak RSS {r['peak_rss_mib']:5.0f} MiB ({r['n']} passages + {r['q']} queries)", flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus-size", type=int, default=500)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=8192, help="ours: passages per shard (library default)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per method, alternating (ABBA...)")
    ap.add_argument("--st-small-batch", type=int, default=8,
                    help="one more sentence-transformers run at this fixed batch size (0: skip)")
    ap.add_argument("--data", choices=["auto", "scifact", "lee", "wiki"], default="auto",
                    help="auto: SciFact from $GECKO_BENCHDATA or ../shared/benchdata, else lee")
    ap.add_argument("--child", choices=["ours", "ours-plain", "st"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.corpus_size, a.queries, a.k, a.batch_size, a.shard_size, a.data)))
        return

    source, passages, queries, _ = load_data(a.corpus_size, a.queries, a.data)
    print(f"data: {source}: {len(passages)} passages, {len(queries)} queries, k={a.k}, "
          f"batch {a.batch_size}, all-MiniLM-L6-v2 (max_seq_length 256), CPU threads: {os.cpu_count()}")
    order = (["ours", "st", "st", "ours"] * a.repeats)[: 2 * a.repeats]
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "st": []}
    for m in order:
        runs[m].append(_show(_run(a, m, a.corpus_size)))
    plain = _show(_run(a, "ours-plain", a.corpus_size))
    small = _show(_run(a, "st", a.corpus_size, a.st_small_batch)) if a.st_small_batch else None
    half = _show(_run(a, "ours", a.corpus_size // 2))
    ours_s = sum(r["seconds"] for r in runs["ours"]) / len(runs["ours"])
    st_s = sum(r["seconds"] for r in runs["st"]) / len(runs["st"])
    ours_cpu = sum(r["cpu_s"] for r in runs["ours"]) / len(runs["ours"])
    st_cpu = sum(r["cpu_s"] for r in runs["st"]) / len(runs["st"])
    # Compared as passage texts, copies merged: mine_hard_negatives de-duplicates the corpus, so where ours
    # lists two copies of a passage (the Lee corpus has 7 duplicates) its list goes one passage deeper.
    agree_n = agree_d = 0
    for x, y in zip(runs["ours"][0]["top"], runs["st"][0]["top"], strict=True):
        ours_texts = list(dict.fromkeys(passages[i] for i in x))
        agree_n += len(set(ours_texts) & {passages[i] for i in y[: len(ours_texts)]})
        agree_d += len(ours_texts)
    agree = agree_n / agree_d
    full = runs["ours"][0]
    print(f"agreement: top-{a.k} overlap ours vs sentence-transformers = {agree:.4f}")
    print(f"memory (ours, streamed + index): peak RSS {half['peak_rss_mib']:.0f} MiB at {half['n']} "
          f"passages, {full['peak_rss_mib']:.0f} MiB at {full['n']} passages "
          f"(x{full['peak_rss_mib'] / half['peak_rss_mib']:.2f} for x{full['n'] / half['n']:.1f} passages; "
          f"sentence-transformers {runs['st'][0]['peak_rss_mib']:.0f} MiB at {full['n']})")
    print(f"mean: ours {ours_s:.1f} s ({ours_cpu:.1f} s CPU), sentence-transformers {st_s:.1f} s "
          f"({st_cpu:.1f} s CPU); CPU-time ratio {st_cpu / ours_cpu:.2f}")
    print(f"where it comes from: ours with plain batches of {a.batch_size} {plain['seconds']:.1f} s "
          f"(sentence-transformers / ours-plain = {st_s / plain['seconds']:.2f})"
          + (f"; sentence-transformers at batch {a.st_small_batch} {small['seconds']:.1f} s "
             f"(that / ours = {small['seconds'] / ours_s:.2f})" if small else ""))
    real, ours_tok, st_tok = padded_tokens(passages, queries, a.batch_size)
    print(f"tokens through the model, padding included: ours {ours_tok} (padding {ours_tok / real - 1:.1%}), "
          f"sentence-transformers {st_tok} (padding {st_tok / real - 1:.1%}); ratio {st_tok / ours_tok:.3f}")
    print(f"ratio: ours/sentence-transformers={st_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
