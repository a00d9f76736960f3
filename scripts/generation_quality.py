"""How well does each LLM write (task, query) pairs? The generation columns of docs/labeller.md (issue 16).

For each ``--llm NAME[:STYLE]`` (STYLE: completion, the default, or chat) the generation stage runs on the same
seeded sample of passages (one query per passage, task types sampled uniformly, greedy), and this prints:

- **accepted**: the share of completions that parse into a usable (task, query) (the stage's reject reasons
  are counted beside it: generic, copy of the passage, too long, duplicate, malformed);
- **distinct tasks**: distinct task strings per accepted query, and how many repeat a few-shot example's task
  string word for word (a model that only copies the examples writes no task descriptions of its own);
- **round trip @3**: the share of accepted queries whose seed passage MiniLM ranks in its top 3 over the
  whole corpus (the mining stage's round-trip filter; a query the passage cannot answer rarely passes);
- **s/passage**: generation wall time per passage;
- a by-eye sample of queries (``--show``).

    python scripts/generation_quality.py --corpus ../shared/benchdata/scifact --passages 40 \\
        --llm gemma3-270m --llm qwen2.5-coder-0.5b:chat --out runs/genq
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import tomllib
from importlib.resources import files
from pathlib import Path

import numpy as np


def _example_tasks() -> set[str]:
    d = tomllib.loads((files("gecko_distill.prompts") / "default.toml").read_text(encoding="utf-8"))
    return {ex["task"].strip() for ex in d["generation"]["examples"]}


def _round_trip(rows: list[dict], passages: list, out: Path, k: int = 3) -> float:
    """Share of queries whose seed passage MiniLM (raw text, its own format) ranks in the top k."""
    from gecko_distill.embedding import load_embedder
    from gecko_distill.embedding.batching import encode_batched
    from gecko_distill.embedding.formats import format_document

    st = load_embedder("all-MiniLM-L6-v2")
    cache = out / "corpus-minilm.npy"
    if cache.exists():
        docs = np.load(cache)
    else:
        docs = encode_batched(st, [format_document(p.text, p.title, mode="none") for p in passages], batch_size=32, prompt="", normalize_embeddings=True)
        np.save(cache, docs)
    index = {p.id: i for i, p in enumerate(passages)}
    q = encode_batched(st, [r["query"] for r in rows], batch_size=64, prompt="", normalize_embeddings=True)
    sims = q @ docs.T
    top = np.argsort(-sims, axis=1)[:, :k]
    return float(np.mean([index[r["passage_id"]] in top[i] for i, r in enumerate(rows)]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", required=True, help="BEIR folder or corpus file (the generation stage's input)")
    ap.add_argument("--llm", action="append", required=True, help="NAME[:completion|chat] (repeatable)")
    ap.add_argument("--passages", type=int, default=40)
    ap.add_argument("--show", type=int, default=4, help="Queries to print per LLM (by-eye sample).")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gecko_distill.corpus import read_corpus
    from gecko_distill.generation import generate
    from gecko_distill.llm import load_llm
    from gecko_distill.prompts import prompts_for
    from gecko_distill.stage_configs import CorpusConfig, GenerationConfig, LLMConfig

    passages, _ = read_corpus(CorpusConfig(path=args.corpus))
    examples = _example_tasks()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for spec in args.llm:
        name, _, style = spec.partition(":")
        llm = load_llm(LLMConfig(model=name, prompt_style=style or "completion"))
        t0 = time.time()
        out = args.out / spec.replace(":", "-").replace("/", "_")
        gen = generate(passages, llm, GenerationConfig(num_passages=args.passages), out_dir=out,
                       prompts=prompts_for(llm), progress=False)
        wall = time.time() - t0
        llm.close()
        manifest = json.loads((out / "manifest.json").read_text())
        rows = [json.loads(x) for x in (out / "generation.jsonl").read_text().splitlines()]
        tasks = [r["task"].strip() for r in rows]
        res = {
            "llm": spec, "passages": args.passages, "accepted": len(rows) / args.passages,
            "rejects": {k: v for k, v in manifest["summary"]["rejects"].items() if v},
            "distinct_tasks": len(set(tasks)) / max(len(rows), 1),
            "example_tasks": float(np.mean([t in examples for t in tasks])) if tasks else 0.0,
            "round_trip_at_3": _round_trip(rows, passages, args.out) if rows else 0.0,
            "s_per_passage": manifest.get("elapsed_s", wall) / args.passages,
            "sample": [(r["task_type"], r["task"], r["query"]) for r in rows[:args.show]],
        }
        del gen
        results.append(res)
        print(json.dumps(res, indent=1), flush=True)
    (args.out / "generation_quality.json").write_text(json.dumps(results, indent=1))
    print("| LLM | accepted | rejects | distinct tasks | example's task copied | round trip @3 | s/passage |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        rej = ", ".join(f"{k} {v}" for k, v in r["rejects"].items())
        print(f"| {r['llm']} | {r['accepted']:.0%} | {rej} | {r['distinct_tasks']:.0%} | {r['example_tasks']:.0%} "
              f"| {r['round_trip_at_3']:.0%} | {r['s_per_passage']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
