"""Would decoding several prompts' sampling steps in one llama.cpp call keep generation's outputs? (issue 13)

Generation decodes one prompt at a time on the cached few-shot prefix: each sampling step is a one-row decode
call, and those steps are most of generation's time. This measures, on the packaged Gemma-3-270M and the first
``--prompts`` SciFact passages (the generation stage's prompt, greedy, ``--steps`` tokens):

- **alone**: each prompt on its own, the sampling steps as the backend runs them (one row, unpadded), and the
  same padded to 8 rows (``PAD``, the row count a batched call of up to 8 prompts has);
- **side by side**: the prompts' own tokens decoded one prompt per call (each branching off the prefix), then
  one decode call per step holding every prompt's next token (padded to a multiple of 8 rows).

For each prompt: the largest |logit difference| between side by side and alone over the steps *before* the
greedy outputs diverge (so it is a numerical difference, not a different text), and whether the greedy
tokens stay the same; then the time per prompt-step. The last line is ``ratio: alone/side-by-side=R`` (time
per prompt-step).

    python bench/batched_sampling.py [--prompts 4] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gecko_distill.config import CorpusConfig  # noqa: E402
from gecko_distill.corpus import read_corpus  # noqa: E402
from gecko_distill.corpus.normalize import truncate_words  # noqa: E402
from gecko_distill.llm.llamacpp import LlamaCppBackend  # noqa: E402
from gecko_distill.llm.packaged import resolve_packaged_llm  # noqa: E402
from gecko_distill.prompts import load_prompts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--passage-words", type=int, default=160)
    args = ap.parse_args()
    root = Path(os.environ.get("GECKO_BENCHDATA", REPO.parent / "shared" / "benchdata")) / "scifact"
    if not (root / "corpus.jsonl.gz").exists():
        sys.exit(f"SciFact not found under {root}: set GECKO_BENCHDATA to the benchdata folder")
    passages, _ = read_corpus(CorpusConfig(path=str(root / "corpus.jsonl.gz"), limit=args.prompts))
    prompts = load_prompts()
    texts = [prompts.generation_prompt(truncate_words(p.text, args.passage_words), "question_answering")
             for p in passages]
    llm = LlamaCppBackend(resolve_packaged_llm("gemma3-270m"), n_ctx=4096)  # room for every prompt at once
    eng = llm._engine
    pre = llm._ensure_prefix(llm._prefix_tokens(prompts.generation_prefix))
    toks = [eng.tokenize(t) for t in texts]
    n = len(toks)

    def prefill(i: int, seq: int, rows: list) -> int:
        eng.seq_cp(0, seq)
        t, pos = toks[i], pre.n_tokens
        eng.run(t, range(pos, pos + len(t)), [seq] * len(t), [j == len(t) - 1 for j in range(len(t))],
                lambda _j, r: rows.append(r.copy()))
        return pos + len(t)

    def alone(i: int, pad: bool) -> tuple[list[int], list[np.ndarray], float]:
        rows: list[np.ndarray] = []
        pos = prefill(i, 1, rows)
        out: list[int] = []
        t0 = time.perf_counter()
        for _ in range(args.steps):
            out.append(int(rows[-1].argmax()))
            eng.run([out[-1]], [pos], [1], [True], lambda _j, r: rows.append(r.copy()), pad=pad)
            pos += 1
        dt = time.perf_counter() - t0
        eng.seq_rm(1)
        return out, rows, dt

    def side_by_side() -> tuple[list[list[int]], list[list[np.ndarray]], float]:
        rows: list[list[np.ndarray]] = [[] for _ in range(n)]
        pos = [prefill(i, 1 + i, rows[i]) for i in range(n)]
        outs: list[list[int]] = [[] for _ in range(n)]
        t0 = time.perf_counter()
        for _ in range(args.steps):
            cur = [int(rows[i][-1].argmax()) for i in range(n)]
            for i in range(n):
                outs[i].append(cur[i])
            eng.run(cur, pos, [1 + i for i in range(n)], [True] * n, lambda j, r: rows[j].append(r.copy()))
            pos = [p + 1 for p in pos]
        dt = time.perf_counter() - t0
        for i in range(n):
            eng.seq_rm(1 + i)
        return outs, rows, dt

    ref = [alone(i, pad=False) for i in range(n)]
    ref_pad = [alone(i, pad=True) for i in range(n)]
    outs, rows, dt = side_by_side()
    for i in range(n):
        pairs = zip(outs[i], ref_pad[i][0], strict=True)
        same = next((k for k, (a, b) in enumerate(pairs) if a != b), args.steps)  # steps before they diverge
        diff = max(float(np.abs(a - b).max())
                   for a, b in zip(rows[i][: same + 1], ref_pad[i][1][: same + 1], strict=True))
        print(f"prompt {i}: side by side vs alone (padded): max |dlogit| {diff:.3g} over the first "
              f"{same + 1} rows; same greedy tokens as alone padded: {outs[i] == ref_pad[i][0]}, as alone unpadded "
              f"(today's path): {outs[i] == ref[i][0]}")
    per_alone = sum(r[2] for r in ref) / (n * args.steps)
    per_pad = sum(r[2] for r in ref_pad) / (n * args.steps)
    per_side = dt / (n * args.steps)
    print(f"ms per prompt-step: alone unpadded {1000 * per_alone:.1f}, alone padded to 8 rows "
          f"{1000 * per_pad:.1f}, {n} side by side {1000 * per_side:.1f} "
          f"({1000 * dt / args.steps:.1f} per call)")
    print(f"ratio: alone/side-by-side={per_alone / per_side:.2f}")


if __name__ == "__main__":
    main()
