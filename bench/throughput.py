"""FRet rows per CPU hour: passage-major scoring (issue 13) against the query-major path, in one run.

Workload (SciFact, as a new user meets it): the first ``--passages`` passages of the SciFact corpus (from
``$GECKO_BENCHDATA`` or ../shared/benchdata), each gets one query written by the embedded default LLM
(Gemma-3-270M, the real generation stage), the seed embedder (all-MiniLM-L6-v2, raw text) fetches the
top-``--top-k`` neighbours of every query over that slice (seed kept), and the LLM scores every (query,
candidate) pair with query likelihood and relevance classification (the mining defaults), passages cut to
``--passage-words`` words. Every query is kept (no round-trip filter), so the work is exactly
passages x top-k pairs.

- **new**: the mining stage's default, ``schedule = "passage"`` on the default llama.cpp engine (flash
  attention off, calls padded to 8 rows): each candidate passage decoded once, every query that retrieved
  it scored as a branch off it; the **whole** workload, through :func:`gecko_distill.mining.mine`.
- **old**: the path before issue 13: ``schedule = "query"`` (4 queries a call) on the engine as it was
  (``flash_attn=True``, calls padded to 64 rows). Its cost per row does not depend on the other queries,
  so it is timed on a seeded sample of ``--old-sample`` queries of the same workload (their candidates
  exactly as the new run found them).
- **query-major, new engine**: the same sample, ``schedule = "query"`` on the default engine: what the
  schedule alone is worth, and a check that its scores equal the new path's bit for bit.
- **agreement** of old and new on the sample: max / mean |diff| (the two engines' kernels differ at the
  ~0.01 nat level), and the share of queries whose QL ranking, RC ranking and QL top-1 are unchanged.
- **queries per passage**: the cost per row of the new path when every passage of a smaller slice
  (``--qpp-passages``) gets 1, 2 or 4 queries (distinct task types, the generation stage's
  ``queries_per_passage``).

Rows per hour = 3600 / (scoring seconds per query); tokens per row = the context + continuation tokens
the backend decodes per query (prefix excluded: it is decoded once per process on both paths; padding rows
excluded). Generation time is reported separately. Stage outputs go to ``--work``: a rerun reuses the
generated queries (delete the folder to time the generation again) and always scores afresh.
The last line is ``ratio: new/old=R`` (old seconds per row / new seconds per row).

    python bench/throughput.py                 # 500 passages, top-20 (53 min on an idle 2-core CPU, 43 on a rerun)
    python bench/throughput.py --passages 100 --qpp-passages 16 --old-sample 8   # smoke run, ~6 min
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gecko_distill.config import CorpusConfig  # noqa: E402
from gecko_distill.corpus import read_corpus  # noqa: E402
from gecko_distill.corpus.normalize import truncate_words  # noqa: E402
from gecko_distill.embedding.loader import load_embedder  # noqa: E402
from gecko_distill.generation import generate  # noqa: E402
from gecko_distill.labelling.scoring import score_candidates  # noqa: E402
from gecko_distill.llm.llamacpp import LlamaCppBackend  # noqa: E402
from gecko_distill.llm.packaged import resolve_packaged_llm  # noqa: E402
from gecko_distill.mining import mine  # noqa: E402
from gecko_distill.prompts import load_prompts  # noqa: E402
from gecko_distill.stage_configs import GenerationConfig, MiningConfig  # noqa: E402


def _scifact(n: int):
    root = Path(os.environ.get("GECKO_BENCHDATA", REPO.parent / "shared" / "benchdata")) / "scifact"
    path = root / "corpus.jsonl.gz"
    if not path.exists():
        sys.exit(f"SciFact not found at {path}: set GECKO_BENCHDATA to the benchdata folder")
    passages, _ = read_corpus(CorpusConfig(path=str(path), limit=n))
    return passages


def _mine(queries, passages, llm, embedder, out: Path, args, *, schedule: str = "passage"):
    cfg = MiningConfig(num_neighbours=args.top_k, max_passage_words=args.passage_words, round_trip_k=None,
                       schedule=schedule)
    t = time.perf_counter()
    res = mine(queries, passages, embedder=embedder, llm=llm, config=cfg, out_dir=out, progress=True)
    wall = time.perf_counter() - t
    m = json.loads((res.path / "scores" / "manifest.json").read_text())
    return res, m["elapsed_s"] or wall


def _tokens(llm: LlamaCppBackend, prompts, pairs_by_query, *, passage_major: bool) -> int:
    """Context + continuation tokens decoded (prefix and padding excluded)."""
    eng = llm._engine
    ntok = {}

    def n(text: str) -> int:
        if text not in ntok:
            ntok[text] = len(eng.tokenize(text))
        return ntok[text]

    total = 0
    seen = set()
    for q, texts in pairs_by_query:
        chain = n(" " + q.strip() + prompts.rc_item)  # QL + RC ride on one chain (labels: one token)
        for p in texts:
            ctx = prompts.ql_item.format(passage=p)
            if not passage_major or ctx not in seen:
                total += n(ctx)
                seen.add(ctx)
            total += chain
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=500)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--passage-words", type=int, default=128)
    ap.add_argument("--old-sample", type=int, default=16, help="queries timed on the old path")
    ap.add_argument("--qpp-passages", type=int, default=24, help="slice for the queries-per-passage curve")
    ap.add_argument("--work", default="/tmp/gecko-bench-throughput")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(args.work)
    for d in ("new", "qpp1", "qpp2", "qpp4"):  # scoring is what is timed: never reuse a finished table
        shutil.rmtree(work / d, ignore_errors=True)
    prompts = load_prompts()
    gguf = resolve_packaged_llm("gemma3-270m")
    new_llm = LlamaCppBackend(gguf)
    embedder = load_embedder("all-MiniLM-L6-v2")
    passages = _scifact(args.passages)
    print(f"workload: {len(passages)} SciFact passages, top-{args.top_k}, passages cut to {args.passage_words} "
          f"words, QL + RC, {os.cpu_count()} CPUs, llama.cpp threads {new_llm._engine.n_threads}")

    # 1. one query per passage (the real generation stage; resumable under --work)
    t = time.perf_counter()
    gen = generate(passages, new_llm, GenerationConfig(num_passages=len(passages), max_passage_words=args.passage_words),
                   out_dir=work / "generation")
    gen_s = time.perf_counter() - t
    queries = gen.queries
    print(f"generation: {len(queries)} queries accepted of {len(passages)} passages, {gen_s:.0f} s "
          f"({gen_s / len(passages):.2f} s per passage; ~0 on a rerun)")

    # 2. new path, whole workload
    res, new_s = _mine(queries, passages, new_llm, embedder, work / "new", args)
    n_rows = len(res.rows)
    new_per_row = new_s / n_rows
    cands = {r["query"]: [c["text"] for c in r["candidates"]] for r in res.rows}
    pairs = [(q.query, [truncate_words(t, args.passage_words) for t in cands[q.query]]) for q in queries]
    new_tok = _tokens(new_llm, prompts, pairs, passage_major=True) / n_rows
    print(f"new (passage-major, new engine): {n_rows} rows, {n_rows * args.top_k} pairs in {new_s:.0f} s: "
          f"{new_per_row:.2f} s/row, {3600 / new_per_row:.0f} rows/hour, {new_tok:.0f} tokens/row")

    # 3. old path on a seeded sample of the same queries and candidates
    rng = random.Random(args.seed)
    sample = sorted(rng.sample(range(len(pairs)), min(args.old_sample, len(pairs))))
    sp = [pairs[i] for i in sample]
    old_llm = LlamaCppBackend(gguf, flash_attn=True)
    old_scores, old_s = _query_major(old_llm, prompts, sp)
    old_llm.close()
    old_per_row = old_s / len(sp)
    old_tok = _tokens(new_llm, prompts, sp, passage_major=False) / len(sp)
    print(f"old (query-major, flash attention, 64-row calls): {len(sp)} sampled rows in {old_s:.0f} s: "
          f"{old_per_row:.2f} s/row, {3600 / old_per_row:.0f} rows/hour, {old_tok:.0f} tokens/row")
    mid_scores, mid_s = _query_major(new_llm, prompts, sp)
    print(f"query-major on the new engine: {mid_s / len(sp):.2f} s/row, {3600 * len(sp) / mid_s:.0f} rows/hour")

    # 4. agreement on the sampled queries
    by_query = {r["query"]: r for r in res.rows}
    exact = all(round(m[s][j], 6) == by_query[q]["candidates"][j][s] for (q, _), m in zip(sp, mid_scores, strict=True)
                for s in ("ql", "rc") for j in range(len(m[s])))
    print(f"query-major vs passage-major on the new engine: {'identical' if exact else 'DIFFERENT'} scores "
          "(to the 1e-6 the rows keep)")
    diffs = {"ql": [], "rc": []}
    same = {"ql": 0, "rc": 0, "top1_ql": 0}
    for (q, _), o in zip(sp, old_scores, strict=True):
        c = by_query[q]["candidates"]
        for s in ("ql", "rc"):
            new = [x[s] for x in c]
            diffs[s] += [abs(a - b) for a, b in zip(o[s], new, strict=True)]
            same[s] += _order(o[s]) == _order(new)
        same["top1_ql"] += _order(o["ql"])[0] == _order([x["ql"] for x in c])[0]
    print(f"agreement on {len(sp)} queries x {args.top_k}: |QL diff| max {max(diffs['ql']):.4f} mean "
          f"{statistics.fmean(diffs['ql']):.4f} nats/token; |RC diff| max {max(diffs['rc']):.4f} mean "
          f"{statistics.fmean(diffs['rc']):.4f}; rankings unchanged: QL {same['ql']}/{len(sp)}, RC {same['rc']}/"
          f"{len(sp)}; QL top-1 unchanged {same['top1_ql']}/{len(sp)} (scores are rounded to 1e-6 in the rows)")

    # 5. cost per row as queries per passage grow (1, 2, 4), new path, smaller slice
    sub = passages[: args.qpp_passages]
    gen4 = generate(sub, new_llm, GenerationConfig(num_passages=len(sub), queries_per_passage=4,
                                                   max_passage_words=args.passage_words),
                    out_dir=work / "generation-qpp4")
    curve = []
    for qpp in (1, 2, 4):
        by_passage: dict[str, list] = {}
        for q in gen4.queries:
            by_passage.setdefault(q.passage_id, []).append(q)
        qs = [q for p in sub for q in by_passage.get(p.id, [])[:qpp]]
        r, s = _mine(qs, sub, new_llm, embedder, work / f"qpp{qpp}", args)
        curve.append((qpp, len(r.rows), s / len(r.rows)))
        print(f"queries per passage {qpp}: {len(r.rows)} rows over {len(sub)} passages, {s:.0f} s, "
              f"{s / len(r.rows):.2f} s/row, {3600 * len(r.rows) / s:.0f} rows/hour")
    print(f"summary: new {3600 / new_per_row:.0f} rows/h ({new_tok:.0f} tokens/row) vs old {3600 / old_per_row:.0f} "
          f"rows/h ({old_tok:.0f} tokens/row); qpp curve s/row " + ", ".join(f"{q}: {c:.2f}" for q, _, c in curve))
    print(f"ratio: new/old={old_per_row / new_per_row:.2f}")


def _query_major(llm, prompts, sp):
    """The query schedule's calls (4 queries each), timed; the prefix decoded outside the timing."""
    score_candidates(llm, prompts, [(sp[0][0], sp[0][1][:1])])
    t = time.perf_counter()
    out = []
    for lo in range(0, len(sp), 4):
        out += score_candidates(llm, prompts, sp[lo : lo + 4])
    return out, time.perf_counter() - t


def _order(xs):
    return sorted(range(len(xs)), key=lambda i: (-xs[i], i))


if __name__ == "__main__":
    main()
