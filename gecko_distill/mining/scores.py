"""The scores table: every (query, candidate) pair of the mining stage with the LLM's scores (issue 13).

One row per pair: the query (its index among the scored queries, and its text), the candidate passage (id,
retriever score and rank) and each LLM signal. The table is a stage artifact of its own
(``fret/scores/scores.parquet``, written in resumable shards) with a fingerprint that covers only what the
scores depend on (LLM, prompts, corpus, queries, retriever, candidates, scorers, schedule): fusion, weights
and the positive / negative policies are chosen from it afterwards, so changing them re-selects without an
LLM call.

Two schedules of the same pairs:

- ``passage`` (default): the pairs grouped by candidate passage, each shard a run of passages (in corpus
  order). A passage that is a neighbour of many queries (at top-20 with one query per passage, about 20)
  is decoded once and every query that retrieved it is scored as a continuation of it
  (:func:`~gecko_distill.labelling.scoring.score_passages`). The grouping and each passage's query order
  (ascending query index) are a pure function of the work, so a score does not depend on the shard size, a
  kill and resume, or the executor.
- ``query``: each shard a run of queries with their candidates (the path before issue 13; a passage is
  decoded again for every query that retrieved it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gecko_distill._stage import LLMShardWork, ShardRunner, run_shards
from gecko_distill.artifacts import StageDir
from gecko_distill.labelling.scoring import score_candidates, score_passages
from gecko_distill.llm.base import LLMBackend
from gecko_distill.prompts import PromptSet

__all__ = ["ScoreTable", "score_table"]


@dataclass(frozen=True)
class _ScoreCall:
    """One shard's LLM call (picklable for remote workers): [(query, candidate texts)] query-major, or
    [(passage text, queries that retrieved it)] passage-major."""

    prompts: PromptSet
    scorers: tuple[str, ...]
    passage_major: bool

    def __call__(self, llm: LLMBackend, work: list[tuple[str, list[str]]]) -> list[dict[str, list[float]]]:
        score = score_passages if self.passage_major else score_candidates
        return score(llm, self.prompts, work, scorers=self.scorers)


@dataclass(frozen=True)
class ScoreTable:
    """The LLM's scores per query, aligned with its candidates (retriever order)."""

    rows: list[dict[str, Any]]
    scorers: tuple[str, ...]
    num_queries: int

    def per_query(self) -> list[dict[str, list[float]]]:
        """Per query: scorer -> scores in candidate order (the shape fusion and selection take)."""
        by_query: list[list[dict[str, Any]]] = [[] for _ in range(self.num_queries)]
        for r in sorted(self.rows, key=lambda r: r["rank_retriever"]):
            by_query[r["query_index"]].append(r)
        return [{s: [float(r[s]) for r in rs] for s in self.scorers} for rs in by_query]


def score_table(
    stage: StageDir,
    *,
    llm: LLMBackend,
    prompts: PromptSet,
    queries: Sequence[str],
    candidates: Sequence[tuple[list[int], list[float]]],
    passage_ids: Sequence[str],
    passage_text: Callable[[int], str],
    scorers: tuple[str, ...],
    schedule: str,
    shard_size: int,
    fingerprint: str,
    progress: bool = True,
    runner: ShardRunner | None = None,
) -> ScoreTable:
    """Score every (query, candidate) pair into ``stage`` (resumable); return the table.

    ``candidates[qi]`` = (corpus indices, retriever scores) of query ``qi`` in retriever order;
    ``passage_text(c)`` = the text the LLM reads for corpus passage ``c`` (already cut).
    """
    if stage.is_complete(fingerprint):
        return ScoreTable(stage.rows(), scorers, len(queries))
    started = time.time()
    stage.prepare(fingerprint)

    def record(qi: int, j: int, s: dict[str, list[float]], k: int) -> dict[str, Any]:
        idx, retr = candidates[qi]
        return {"query_index": qi, "query": queries[qi], "passage_id": passage_ids[idx[j]],
                "rank_retriever": j + 1, "retriever": round(retr[j], 6), **{n: s[n][k] for n in scorers}}

    if schedule == "query":
        def request(batch: Sequence[int], start: int) -> list[tuple[str, list[str]]]:
            return [(queries[qi], [passage_text(c) for c in candidates[qi][0]]) for qi in batch]

        def finish(batch: Sequence[int], start: int, scored: list[dict[str, list[float]]]) -> list[dict[str, Any]]:
            return [record(qi, j, s, j) for qi, s in zip(batch, scored, strict=True)
                    for j in range(len(candidates[qi][0]))]

        items: list[int] = list(range(len(queries)))
        work = LLMShardWork(llm, request, _ScoreCall(prompts, scorers, passage_major=False), finish)
        desc, unit = "score (query-major)", "query"
    elif schedule == "passage":
        # passage -> [(query, position among its candidates)], queries ascending: a pure function of the work
        readers: dict[int, list[tuple[int, int]]] = {}
        for qi, (idx, _) in enumerate(candidates):
            for j, c in enumerate(idx):
                readers.setdefault(c, []).append((qi, j))
        items = sorted(readers)

        def request(batch: Sequence[int], start: int) -> list[tuple[str, list[str]]]:  # type: ignore[misc]
            return [(passage_text(c), [queries[qi] for qi, _ in readers[c]]) for c in batch]

        def finish(batch: Sequence[int], start: int, scored: list[dict[str, list[float]]]  # type: ignore[misc]
                   ) -> list[dict[str, Any]]:
            return [record(qi, j, s, k) for c, s in zip(batch, scored, strict=True)
                    for k, (qi, j) in enumerate(readers[c])]

        work = LLMShardWork(llm, request, _ScoreCall(prompts, scorers, passage_major=True), finish)
        desc, unit = "score (passage-major)", "passage"
    else:
        raise ValueError(f"unknown scoring schedule {schedule!r}; valid: 'passage', 'query'")
    n = run_shards(stage, items, shard_size, work, desc=f"{desc}, LLM {'+'.join(scorers).upper()}",
                   progress=progress, runner=runner)
    rows = stage.read_shards(n)
    rows.sort(key=lambda r: (r["query_index"], r["rank_retriever"]))
    pairs = sum(len(c[0]) for c in candidates)
    if len(rows) != pairs:  # a shard written by another plan would show here; never select from a partial table
        raise RuntimeError(f"{stage.path}: the scores table has {len(rows)} pairs, the work has {pairs}; delete "
                           f"{stage.path} and rerun")
    stage.finalize(rows, fp=fingerprint, config={"schedule": schedule, "shard_size": shard_size,
                                                 "scorers": list(scorers)},
                   summary={"pairs": len(rows), "queries": len(queries), f"{unit}s": len(items)},
                   started_at=started)
    return ScoreTable(rows, scorers, len(queries))
