"""Rankings and reciprocal-rank fusion (Gecko App. A; Cormack et al. 2009). Pure functions.

Gecko fuses the query-likelihood and relevance-classification rankings of a query's N neighbours by

    R(q, p) = 1 / r_QL(q, p) + 1 / r_RC(q, p)          (1-based ranks; RRF with k = 0)

We generalise to ``R = Σ_s w_s / (k + r_s)`` (k = 0, w_s = 1 reproduce the paper exactly).
Ties are not addressed by the paper; ours are deterministic [ours]:
- within one scorer, equal scores share order by the first-stage retriever rank (earlier wins);
- in the fused order, equal R is broken by the QL score (higher first), then by retriever rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["fuse", "rank"]


def rank(scores: Sequence[float]) -> list[int]:
    """1-based ranks, higher score first; ties broken by position (the retriever order)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    ranks = [0] * len(scores)
    for r, i in enumerate(order, 1):
        ranks[i] = r
    return ranks


def fuse(
    ranks: Mapping[str, Sequence[int]],
    *,
    k: float = 0.0,
    weights: Mapping[str, float] | None = None,
    tie_scores: Sequence[float] | None = None,
) -> tuple[list[float], list[int]]:
    """Fused scores and the fused order (candidate indices, best first).

    Args:
        ranks: scorer name -> 1-based ranks of each candidate (all the same length).
        k: RRF constant; 0 as in Gecko.
        weights: per-scorer weight (default 1). A weight of 0 drops a signal.
        tie_scores: used to break equal fused scores (higher first), e.g. the QL scores; then position.
    """
    names = list(ranks)
    if not names:
        raise ValueError("no rankings to fuse")
    n = len(ranks[names[0]])
    if any(len(ranks[s]) != n for s in names):
        raise ValueError("rankings have different lengths")
    w = {s: (weights or {}).get(s, 1.0) for s in names}
    fused = [sum(w[s] / (k + ranks[s][i]) for s in names) for i in range(n)]
    tie = tie_scores if tie_scores is not None else [0.0] * n
    order = sorted(range(n), key=lambda i: (-fused[i], -tie[i], i))
    return fused, order
