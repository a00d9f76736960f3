"""The two LLM scorers of Gecko step 3, over a query's candidate passages.

- Query likelihood (UPR; Sachan et al. 2022): QL(q, p) = mean log P(q tokens | P_QL, p). Length-normalised
  so that candidates are compared on the same query (normalisation does not change the ranking for one
  query, but keeps scores comparable across queries in reports).
- Relevance classification (Zhuang et al. 2023): RC(q, p) = log P(" Yes" | P_RC, q, p) − log P(" No" | …).
  The margin, not raw log P(" Yes"): with small models the raw label probability mostly tracks how
  "answerable-looking" a passage is and ranked worse than random on SciFact (docs/labeller.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from gecko_distill.llm.base import LLMBackend, LoglikRequest
from gecko_distill.prompts import PromptSet

__all__ = ["score_candidates"]


def score_candidates(
    llm: LLMBackend,
    prompts: PromptSet,
    pairs: Sequence[tuple[str, Sequence[str]]],
    *,
    scorers: Sequence[str] = ("ql", "rc"),
) -> list[dict[str, list[float]]]:
    """Score every (query, candidate) pair. ``pairs`` = [(query, [passage texts])]; returns per query
    a dict scorer -> list of scores aligned with the candidates. One backend call per scorer for the
    whole batch, so backends can share the prefix and batch across queries."""
    out: list[dict[str, list[float]]] = [{} for _ in pairs]
    if "ql" in scorers:
        reqs = [prompts.ql_request(q, p) for q, ps in pairs for p in ps]
        res = llm.loglik(reqs, prefix=prompts.ql_prefix)
        _scatter(out, pairs, "ql", [r.mean for r in res])
    if "rc" in scorers:
        reqs2: list[LoglikRequest] = []
        for q, ps in pairs:
            for p in ps:
                reqs2.extend(prompts.rc_requests(q, p))
        res = llm.loglik(reqs2, prefix=prompts.rc_prefix)
        margins = [res[i].logprob - res[i + 1].logprob for i in range(0, len(res), 2)]
        _scatter(out, pairs, "rc", margins)
    return out


def _scatter(out: list[dict[str, list[float]]], pairs: Sequence[tuple[str, Sequence[str]]], name: str,
             flat: list[float]) -> None:
    i = 0
    for j, (_, ps) in enumerate(pairs):
        out[j][name] = flat[i : i + len(ps)]
        i += len(ps)
