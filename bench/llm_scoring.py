"""LLM scoring throughput: our llama.cpp backend against the machine's ceiling and a naive baseline.

One run, the same queries, candidates and prompts (query likelihood + relevance " Yes"/" No", i.e. the
three requests per (query, passage) pair the mining stage sends, after the packaged few-shot prefix):

  (a) raw llama.cpp prefill: ``llama_cpp.Llama.eval`` of every full token sequence (prefix + context +
      continuation), the most tokens/s this machine gets out of llama.cpp;
  (b) gecko-distill's ``llamacpp`` backend ``loglik`` (prefix kept resident, each passage decoded once for
      its three requests, logits only where scored), as *effective* tokens/s: the tokens a no-reuse scorer
      would have to process, divided by our wall time;
  (c) a naive per-pair transformers scorer, as a peer writes it: for each request one forward of its whole
      sequence (prefix + context + continuation), logits at every position, ``log_softmax``, sum over the
      continuation -- no cache, no batching (the same GGUF loaded through transformers, float32);
  (d) for information, not in the ratios: our ``transformers`` backend on the same requests (prefix KV
      reuse, each passage run once for its three requests, length-bucketed batches, logits only where
      scored), and the max |(c) - (d)| in nats, which shows (c) and (d) compute the same scores.

Data: SciFact train claims and their corpus (``--benchdata``, default ../shared/benchdata) when present,
else the packaged gensim Wikipedia sample. The last line is ``ratios: b/a=<x> b/c=<y>``.

    python bench/llm_scoring.py [--queries 2] [--candidates 4] [--skip-transformers]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gecko_distill.corpus.normalize import truncate_words  # noqa: E402
from gecko_distill.llm.base import LoglikRequest  # noqa: E402
from gecko_distill.prompts import load_prompts  # noqa: E402


def scifact_pairs(root: Path, n_queries: int, n_cands: int, seed: int) -> list[tuple[str, list[str]]]:
    """(claim, [relevant abstract + random others]) for the first claims that have a judged abstract."""
    qrels: dict[str, str] = {}
    for line in (root / "qrels" / "train.tsv").read_text().splitlines()[1:]:
        qid, did, *_ = line.split("\t")
        qrels.setdefault(qid, did)
    queries = [json.loads(x) for x in (root / "queries.jsonl").read_text().splitlines() if x.strip()]
    queries = [q for q in queries if q["_id"] in qrels][:n_queries]
    with gzip.open(root / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        docs = {d["_id"]: (d.get("title", "") + ". " + d["text"]).strip() for d in map(json.loads, f)}
    rng = random.Random(seed)
    ids = sorted(docs)
    out = []
    for q in queries:
        others = [i for i in rng.sample(ids, n_cands + 1) if i != qrels[q["_id"]]][: n_cands - 1]
        out.append((q["text"], [docs[qrels[q["_id"]]]] + [docs[i] for i in others]))
    return out


def wiki_pairs(n_queries: int, n_cands: int, seed: int) -> list[tuple[str, list[str]]]:
    from gecko_distill.config import CorpusConfig
    from gecko_distill.corpus import read_corpus

    passages = read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=400))[0]
    rng = random.Random(seed)
    picked = rng.sample(passages, n_queries * n_cands)
    return [(f"what is {picked[i * n_cands].title or 'this'}", [p.text for p in picked[i * n_cands:(i + 1) * n_cands]])
            for i in range(n_queries)]


def naive_loglik(model, tokenizer, prefix: str, reqs: list[LoglikRequest]) -> list[float]:  # noqa: ANN001
    """The per-pair baseline: one full forward per request, full-vocabulary logits at every position."""
    import torch

    out = []
    with torch.no_grad():
        for r in reqs:
            # Prefix, context and continuation tokenised apart and joined, as every scorer here does.
            ctx = (tokenizer(prefix, add_special_tokens=True)["input_ids"]
                   + (tokenizer(r.context, add_special_tokens=False)["input_ids"] if r.context else []))
            cont = tokenizer(r.continuation, add_special_tokens=False)["input_ids"]
            logits = model(input_ids=torch.tensor([ctx + cont])).logits[0].float()
            logp = torch.log_softmax(logits[len(ctx) - 1 : -1], dim=-1)
            out.append(float(logp[torch.arange(len(cont)), torch.tensor(cont)].sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--max-passage-words", type=int, default=160)
    ap.add_argument("--model", default="gemma3-270m", help="packaged alias or GGUF path")
    ap.add_argument("--benchdata", default=os.environ.get("GECKO_BENCHDATA", str(REPO.parent / "shared" / "benchdata")))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--skip-transformers", action="store_true", help="skip (c) (its load takes ~1-2 min)")
    ap.add_argument("--with-plain", action="store_true",
                    help="also time our backend with reuse_prefix=False and check its scores equal (b)'s")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from gecko_distill.llm.llamacpp import LlamaCppBackend
    from gecko_distill.llm.model_files import resolve_model_source

    gguf = resolve_model_source(args.model).path
    scifact = Path(args.benchdata) / "scifact"
    if (scifact / "corpus.jsonl.gz").is_file():
        pairs, source = scifact_pairs(scifact, args.queries, args.candidates, args.seed), "SciFact train"
    else:
        pairs, source = wiki_pairs(args.queries, args.candidates, args.seed), "gensim wiki sample"
    prompts = load_prompts()
    reqs: list[LoglikRequest] = []
    for q, cands in pairs:
        for p in cands:
            p = truncate_words(p, args.max_passage_words)
            reqs.append(prompts.ql_request(q, p))
            reqs.extend(prompts.rc_requests(q, p))
    prefix = prompts.ql_prefix

    ours = LlamaCppBackend(gguf, n_threads=args.threads)
    eng = ours._engine  # the same tokenizer llama.cpp uses, to count the workload
    ptoks = ours._prefix_tokens(prefix)
    seqs = [ptoks + eng.tokenize(r.context) + eng.tokenize(r.continuation) for r in reqs]
    total = sum(len(s) for s in seqs)
    print(f"workload: {source}, {len(pairs)} queries x {args.candidates} candidates x 3 requests (QL + RC yes/no) "
          f"= {len(reqs)} requests; prefix {len(ptoks)} tokens; {total} tokens without reuse; "
          f"{args.threads} threads; model {gguf.name}")

    # (a) the ceiling: plain llama.cpp prefill of every full sequence
    import llama_cpp

    raw = llama_cpp.Llama(str(gguf), n_ctx=2048, n_batch=512, n_threads=args.threads,
                          n_threads_batch=args.threads, flash_attn=True, verbose=False)
    raw.reset()
    raw.eval(seqs[0][:32])  # warm-up
    t0 = time.perf_counter()
    for s in seqs:
        raw.reset()
        raw.eval(s)
    ta = time.perf_counter() - t0
    del raw
    a = total / ta
    print(f"(a) llama.cpp raw prefill (Llama.eval of each full sequence): {a:8.1f} tok/s  ({ta:.1f} s)")

    # (b) ours, from a cold cache: the prefix decode is part of the measured time
    ours.loglik([LoglikRequest("warm", " up")], prefix="warm-up prefix")
    t0 = time.perf_counter()
    fast = ours.loglik(reqs, prefix=prefix)
    tb = time.perf_counter() - t0
    b = total / tb
    print(f"(b) gecko-distill llamacpp loglik (prefix + context reuse): {b:8.1f} effective tok/s  ({tb:.1f} s)")
    if args.with_plain:
        ours.reuse_prefix = False
        t0 = time.perf_counter()
        plain = ours.loglik(reqs, prefix=prefix)
        tp = time.perf_counter() - t0
        diff = max(abs(x.logprob - y.logprob) for x, y in zip(fast, plain, strict=True))
        print(f"    same backend, reuse_prefix=False: {total / tp:8.1f} tok/s  ({tp:.1f} s); "
              f"max |reuse - no reuse| = {diff:.2g} nats")
    ours.close()

    # (c) naive per-pair transformers, then (d) our transformers backend on the same loaded model
    c = None
    if not args.skip_transformers:
        try:
            import torch

            from gecko_distill.config import LLMConfig
            from gecko_distill.llm.transformers_backend import TransformersBackend

            torch.set_num_threads(args.threads)
            t0 = time.perf_counter()
            tfm = TransformersBackend.from_config(LLMConfig(backend="transformers", model=str(gguf)))
            load = time.perf_counter() - t0
            naive_loglik(tfm.model, tfm.tokenizer, prefix, reqs[:1])  # warm-up
            t0 = time.perf_counter()
            naive = naive_loglik(tfm.model, tfm.tokenizer, prefix, reqs)
            tc = time.perf_counter() - t0
            c = total / tc
            print(f"(c) naive transformers, full forward per pair (GGUF -> float32): {c:8.1f} tok/s  ({tc:.1f} s; "
                  f"load {load:.0f} s not counted)")
            tfm.loglik(reqs[:1], prefix="warm-up prefix")
            t0 = time.perf_counter()
            ours_t = tfm.loglik(reqs, prefix=prefix)
            td = time.perf_counter() - t0
            diff = max(abs(x - y.logprob) for x, y in zip(naive, ours_t, strict=True))
            print(f"(d) gecko-distill transformers loglik (CPU, not in the ratios): {total / td:8.1f} effective tok/s "
                  f"({td:.1f} s); max |(c) - (d)| = {diff:.2g} nats")
        except Exception as e:  # noqa: BLE001 - report and still print the other ratio
            print(f"(c) naive transformers FAILED: {type(e).__name__}: {e}")
    print(f"ratios: b/a={b / a:.2f} b/c={(b / c) if c else float('nan'):.2f}")


if __name__ == "__main__":
    main()
