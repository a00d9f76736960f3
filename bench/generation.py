"""Generation throughput with several queries per passage: one passage decoded once for its Q prompts.

The generation stage writes Q = ``queries_per_passage`` prompts per seed passage ("Passage: ...\\nTask
type: ...\\nTask:", one task type each), consecutive and in one backend call. The ``llamacpp`` backend
decodes their common leading tokens (the passage) once and branches each prompt's tail from it; the old
path (``share_prompt_prefix=False``) decodes every prompt whole. Both write bit-identical text (checked
here). For Q = 1, 2, 4 on the same N passages, greedy, the stage's stop strings, the packaged few-shot
prefix (cached, decoded before timing), shards as the stage cuts them (``generation.batch_size`` rounded
up to a multiple of Q), old and new timed alternately:

    python bench/generation.py [--passages 12] [--max-tokens 48] [--repeats 1]

Data: SciFact passages (``$GECKO_BENCHDATA``/scifact/corpus.jsonl.gz, default ../shared/benchdata) when
present, else the packaged demo corpus (gensim Wikipedia sample). The last line is
``ratio: new/old=<old s per query / new s per query at Q=4>``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gecko_distill.config import GenerationConfig  # noqa: E402
from gecko_distill.corpus.normalize import truncate_words  # noqa: E402
from gecko_distill.generation.stage import _shard_size  # noqa: E402
from gecko_distill.llm.base import GenerationParams  # noqa: E402
from gecko_distill.prompts import load_prompts  # noqa: E402


def passages(benchdata: Path, n: int) -> tuple[list[str], str]:
    path = benchdata / "scifact" / "corpus.jsonl.gz"
    if path.is_file():
        out = []
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                text = (d.get("title", "") + ". " + d["text"]).strip()
                if len(text.split()) >= 60:  # abstracts, not stubs
                    out.append(text)
                if len(out) == n:
                    break
        return out, "SciFact corpus"
    from gecko_distill.config import CorpusConfig
    from gecko_distill.corpus import read_corpus

    return [p.text for p in read_corpus(CorpusConfig(path="demo:gensim-wiki", limit=n))[0]], "gensim wiki sample"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=12)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--qs", default="1,2,4", help="queries per passage to time")
    ap.add_argument("--batch-size", type=int, default=8, help="generation.batch_size (prompts per call)")
    ap.add_argument("--repeats", type=int, default=1, help="time each path this many times, keep the fastest")
    ap.add_argument("--model", default="gemma3-270m", help="packaged alias or GGUF path")
    ap.add_argument("--benchdata", default=os.environ.get("GECKO_BENCHDATA", str(REPO.parent / "shared" / "benchdata")))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()

    from gecko_distill.llm.llamacpp import LlamaCppBackend
    from gecko_distill.llm.model_files import resolve_model_source

    texts, source = passages(Path(args.benchdata), args.passages)
    prompts = load_prompts()
    cfg = GenerationConfig()
    types = list(cfg.task_types)
    params = GenerationParams(max_tokens=args.max_tokens, stop=("\n\n", "\nPassage:", "\nTask type:"))
    llm = LlamaCppBackend(resolve_model_source(args.model).path, n_threads=args.threads)
    llm.generate(["warm-up"], prefix=prompts.generation_prefix, params=GenerationParams(max_tokens=1))
    eng = llm._engine
    print(f"workload: {source}, {len(texts)} passages cut to {cfg.max_passage_words} words, greedy, max_tokens "
          f"{args.max_tokens}, batch_size {args.batch_size}, {args.threads} threads, model {llm.path.name}")
    per_query: dict[int, tuple[float, float]] = {}
    for q in [int(x) for x in args.qs.split(",")]:
        items = [prompts.generation_prompt(truncate_words(t, cfg.max_passage_words), types[(i + j) % len(types)])
                 for i, t in enumerate(texts) for j in range(q)]
        size = _shard_size(GenerationConfig(batch_size=args.batch_size, queries_per_passage=q,
                                            temperature=0.7 if q > len(types) else 0.0))
        shards = [items[i:i + size] for i in range(0, len(items), size)]
        best = {"old": float("inf"), "new": float("inf")}
        outs = {}
        for _ in range(args.repeats):
            for path in ("old", "new"):
                llm.share_prompt_prefix = path == "new"
                t0 = time.perf_counter()
                outs[path] = [o for s in shards for o in llm.generate(s, prefix=prompts.generation_prefix,
                                                                      params=params)]
                best[path] = min(best[path], time.perf_counter() - t0)
        same = outs["old"] == outs["new"]
        n_prompt = sum(len(eng.tokenize(p)) for p in items)
        n_out = sum(len(eng.tokenize(o)) for o in outs["new"])
        old, new = best["old"] / len(items), best["new"] / len(items)
        per_query[q] = (old, new)
        print(f"Q={q}: {len(items)} queries ({n_prompt} prompt + ~{n_out} generated tokens), shards of {size}: "
              f"old {old:.3f} s/query, new {new:.3f} s/query (x{old / new:.2f}); identical outputs: {same}")
        if not same:
            raise SystemExit("outputs differ between the old and the new path")
    llm.close()
    q = max(per_query)
    old, new = per_query[q]
    print(f"ratio: new/old={old / new:.2f}")


if __name__ == "__main__":
    main()
