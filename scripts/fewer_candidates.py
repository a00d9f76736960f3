"""What a smaller ``mining.num_neighbours`` would have mined, from a finished FRet set, without an LLM call.

Each row of a mined FRet set carries all N candidates with their retriever rank and every LLM score. The LLM's
score of a (query, passage) pair does not depend on which other candidates were scored beside it (passage-major
scoring is a pure function of the pair, tests/integration/test_scores_table.py), so keeping the candidates of
retriever rank <= K (the seed is forced in, as mining does) and selecting again gives the rows a run with
``num_neighbours = K`` would have written (with the same round-trip filter, which looks at the top 3 only).

    python scripts/fewer_candidates.py runs/headline-cpu/fret runs/headline-top5/fret --k 5 --fusion ql
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from gecko_distill.artifacts import StageDir
from gecko_distill.labelling.fusion import rank
from gecko_distill.mining.selection import select
from gecko_distill.records import Passage, TaskQuery
from gecko_distill.mining.stage import fret_row
from gecko_distill.training.data import read_fret


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--fusion", default="ql", help="the single signal that ranks the kept candidates")
    args = ap.parse_args()
    rows, manifest = read_fret(args.src)
    out = []
    for qi, r in enumerate(rows):
        cands = [c for c in r["candidates"] if c["rank_retriever"] <= args.k or c["id"] == r["seed_id"]]
        ranks = rank([c[args.fusion] for c in cands])
        order = sorted(range(len(cands)), key=lambda i: ranks[i])
        seed = next(i for i, c in enumerate(cands) if c["id"] == r["seed_id"])
        sel = select(order, seed, rng=random.Random(f"0:{qi}"))

        def passage(i: int) -> Passage:
            return Passage(cands[i]["id"], cands[i]["text"], cands[i]["title"])

        tq = TaskQuery(r["seed_id"], r["task_type"], r["task"], r["query"])
        out.append(fret_row(tq, passage(sel.positive), passage(sel.negative), seed_id=r["seed_id"],
                            positive_moved=sel.positive != seed, candidates=cands))
    moved = sum(r["positive_moved"] for r in out)
    StageDir(Path(args.dst), "fret").prepare(f"fewer-candidates:{args.k}")
    StageDir(Path(args.dst), "fret").finalize(
        out, fp=f"fewer-candidates:{args.k}", config={"from": args.src, "k": args.k, "fusion": args.fusion},
        summary={"rows_out": len(out), "positive_moved": moved, "num_neighbours": args.k})
    print(f"{len(out)} rows, {moved} positives moved off the seed, candidates per row: {len(out[0]['candidates'])}")


if __name__ == "__main__":
    main()
