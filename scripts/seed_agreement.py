"""Seed agreement of each stored signal over a whole FRet set: what ``fusion = "auto"`` sees without labels.

    python scripts/seed_agreement.py runs/x/fret [--sample 32 --repeats 200]

For every row the seed passage (the one the query was written from) is among the candidates; this prints the
seed's mean reciprocal rank under the retriever and under each LLM signal the rows carry (ties broken at random
in expectation, as ``auto`` does), over all rows and, with ``--sample``, how often a random sample of that size
would keep each signal (its seed MRR above the retriever's). Compare with the qrels verdict of
``gecko-distill rerank-eval`` on the same domain to see the seed check's bias (docs/labeller.md).
"""

from __future__ import annotations

import argparse
import random
import sys

from gecko_distill.labelling.auto_fusion import RETRIEVER, seed_agreement
from gecko_distill.training.data import read_fret


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("fret")
    ap.add_argument("--sample", type=int, default=32, help="Sample size of the auto check to simulate.")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args(argv)
    rows, _ = read_fret(args.fret)
    signals = [s for s in ("ql", "rc") if rows and s in rows[0]["candidates"][0]]
    scores, seeds = [], []
    for r in rows:
        cands = r["candidates"]
        scores.append({s: [c[s] for c in cands] for s in signals})
        seeds.append(next(j for j, c in enumerate(cands) if c["id"] == r["seed_id"]))
    whole = seed_agreement(scores, seeds)
    print(f"{len(rows)} rows; seed MRR / seed first / mean seed rank")
    for name, m in whole.items():
        print(f"  {name:10s} {m['mrr']:.3f} / {m['seed_first']:.3f} / {m['mean_seed_rank']:.2f}")
    rng = random.Random(0)
    n = min(args.sample, len(rows))
    for s in signals:
        kept = 0
        for _ in range(args.repeats):
            idx = rng.sample(range(len(rows)), n)
            agree = seed_agreement([scores[i] for i in idx], [seeds[i] for i in idx])
            kept += agree[s]["mrr"] > agree[RETRIEVER]["mrr"]
        print(f"  a {n}-query auto check keeps {s!r} in {kept / args.repeats:.0%} of {args.repeats} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
