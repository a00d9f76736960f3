"""Retrieval metrics over a run and qrels: a small pure core and the pytrec_eval reference.

The pure functions (:func:`ndcg_at_k`, :func:`recall_at_k`) exist for hand-checked tests and for callers that
score a handful of rankings (e.g. a re-ranker's top-20). :func:`score_run` is the one to use for a whole run:
it calls pytrec_eval (trec_eval's C code, which mteb also uses), so numbers match MTEB's.

Conventions are trec_eval's, which MTEB inherits:

- gain is the graded relevance itself (not ``2**rel - 1``), discount ``1 / log2(rank + 1)``;
- the ideal ranking sorts all judged documents by relevance; documents judged 0 add nothing;
- ties in score are broken by document id, *descending* (string order);
- a query is averaged in when it has at least one relevant document; a query missing from the run scores 0.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["ndcg_at_k", "rank_documents", "recall_at_k", "score_run"]


def rank_documents(scores: Mapping[str, float]) -> list[str]:
    """Document ids by decreasing score, ties by decreasing id (trec_eval's order)."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]


def ndcg_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """nDCG@k of one ranked list of document ids against graded judgements."""
    dcg = sum(
        relevance.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranking[:k]) if relevance.get(d, 0) > 0
    )
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Fraction of the relevant documents (relevance > 0) found in the first ``k``."""
    relevant = {d for d, r in relevance.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def score_run(
    run: Mapping[str, Mapping[str, float]],
    qrels: Mapping[str, Mapping[str, int]],
    k_values: Sequence[int] = (10,),
) -> dict[str, float]:
    """Mean ``ndcg_at_k`` and ``recall_at_k`` (MTEB's key names) of a run, computed by pytrec_eval.

    Args:
        run: ``{query_id: {doc_id: score}}`` (higher is better).
        qrels: ``{query_id: {doc_id: relevance}}``; queries without a relevant document are left out.
        k_values: Cut-offs.
    """
    import pytrec_eval

    judged = {
        q: {d: int(r) for d, r in rel.items()} for q, rel in qrels.items() if any(r > 0 for r in rel.values())
    }
    if not judged:
        raise ValueError("no query in qrels has a relevant document")
    ks = ",".join(str(k) for k in k_values)
    evaluator = pytrec_eval.RelevanceEvaluator(judged, {f"ndcg_cut.{ks}", f"recall.{ks}"})
    per_query = evaluator.evaluate(
        {q: {d: float(s) for d, s in run[q].items()} for q in judged if q in run and run[q]}
    )
    out: dict[str, float] = {}
    for k in k_values:
        # pytrec_eval skips queries absent from the run; MTEB never has any, we count them as 0.
        out[f"ndcg_at_{k}"] = sum(m[f"ndcg_cut_{k}"] for m in per_query.values()) / len(judged)
        out[f"recall_at_{k}"] = sum(m[f"recall_{k}"] for m in per_query.values()) / len(judged)
    return out
