"""What ``generation.max_passage_overlap = T`` would have kept, from a finished FRet set, without an LLM call.

The overlap filter looks at one query and its own seed passage only (``passage_overlap`` of the query against the
passage as the generation prompt showed it: the text cut to ``--passage-words``), and mining treats every query
on its own (retrieval, round-trip filter, selection), so dropping the rows of the rejected queries gives the FRet
set a run with the filter would have mined from the same generation.

    python scripts/overlap_filter.py runs/headline-cpu-seedpos/fret runs/overlap/gemma-seedpos-t50/fret --max 0.5
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gecko_distill.artifacts import StageDir
from gecko_distill.corpus.normalize import truncate_words
from gecko_distill.generation.parsing import passage_overlap
from gecko_distill.training.data import read_fret


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--max", type=float, required=True, help="the max_passage_overlap to apply")
    ap.add_argument("--passage-words", type=int, default=160, help="generation.max_passage_words of the run")
    args = ap.parse_args()
    rows, _ = read_fret(args.src)

    def seed_text(r: dict) -> str:
        return next(c["text"] for c in r["candidates"] if c["id"] == r["seed_id"])

    out = [r for r in rows if passage_overlap(r["query"], truncate_words(seed_text(r), args.passage_words)) < args.max]
    fp = f"overlap-filter:{args.max}:{args.passage_words}"
    stage = StageDir(Path(args.dst), "fret")
    stage.prepare(fp)
    stage.finalize(
        out, fp=fp, config={"from": args.src, "max_passage_overlap": args.max},
        summary={"rows_in": len(rows), "rows_out": len(out), "near_copy": len(rows) - len(out)})
    print(f"{len(rows)} rows -> {len(out)} ({len(rows) - len(out)} near copies dropped)")


if __name__ == "__main__":
    main()
